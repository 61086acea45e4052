"""Running the command line with a plug-in: a one-file module written to a folder and imported first."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def write_plugin(folder: Path, module: str, source: str) -> None:
    (folder / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")


def volumelab_with(folder: Path, module: str, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """``volumelab ARGS`` (or ``code``) in a fresh interpreter in ``folder`` that imports ``module`` (a plug-in
    there) before the command line."""
    code = code or f"import sys, {module}; from volumelab.cli import main; sys.exit(main({list(args)!r}))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]),
           "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=folder)
