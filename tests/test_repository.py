"""The repository stands on its own and its docs match the code's defaults."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".toml", ".txt", ".cfg", ""}


def _repository_files():
    for folder in ("src", "tests", "benchmarks", "docs", ".ci"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "egg-info" not in str(path) \
                    and "venv" not in path.parts:
                yield path
    yield ROOT / "README.md"
    yield ROOT / "pyproject.toml"


def test_no_reference_outside_the_repository():
    """Design notes live in docs/design.md, not in a file beside the repository."""
    assert (ROOT / "docs" / "design.md").is_file()
    offenders = []
    for path in _repository_files():
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "../shared" in text or "DESIGN.md" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_ci_never_deletes_the_users_environment():
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    removed = []
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        for i, word in enumerate(words):
            if word == "rm":
                removed += [w for w in words[i + 1:] if not w.startswith("-")]
    assert removed, "CI starts from a fresh environment of its own"
    assert all(Path(target).parts[:1] == (".ci",) for target in removed), removed
    assert "python -m pytest" in script and "-m slow" in script


@pytest.mark.parametrize("document", ["README.md", "docs/experiments.md"])
def test_documented_load_results_paths_are_the_default_output_folders(document):
    """``load_results`` examples name a folder the documented commands write by default."""
    text = (ROOT / document).read_text(encoding="utf-8")
    paths = re.findall(r"load_results\(\"([^\"]+)\"\)", text)
    assert paths
    for path in paths:
        # reproduce/run write to runs/<scale>/<name> unless --out is given.
        assert re.fullmatch(r"runs/(quick|paper|base)/[A-Za-z0-9_.\-]+", path), path
