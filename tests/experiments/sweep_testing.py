"""Tiny sweeps shared by the experiment tests (thousands of draws, tens of GD steps)."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path


TINY = """\
name: tiny
claim: width
x: model.width
panel: model.activation
problem: {task: sensing, rows: 4, cols: 4, rank: 1, measurements: 8}
model: {depth: 2}
methods:
  gnc: {eps: 0.1, samples: 3000}
  gd: {lr: 1.0e-2, steps: 20, init_scale: 1.0e-3}
grid:
  model.activation: [linear, tanh]
  model.width: [4, 8]
seeds: 3
scales:
  quick:
    note: fewer draws
    set: {methods.gnc.samples: 2000}
"""


def write_config(directory: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path



def record_task(task) -> tuple[str, int, int]:
    """A stand-in task for executor tests: ``(name, pid, torch threads)``.

    With a ``folder``, a single-threaded task marks its start there and waits (up to
    30 s) until a second one has started, so it only returns if two run at once.
    """
    import torch

    if task.single_threaded and task.folder:
        folder = Path(task.folder)
        (folder / f"started-{task.name}").touch()
        deadline = time.time() + 30
        while len(list(folder.glob("started-*"))) < 2:
            if time.time() > deadline:
                raise TimeoutError("no other single-threaded task started alongside")
            time.sleep(0.01)
    return task.name, os.getpid(), torch.get_num_threads()
