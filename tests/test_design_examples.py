"""Every Python example in docs/design.md runs as written."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DESIGN.read_text(encoding="utf-8"), flags=re.S)


def test_design_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_design_example_runs(index, tmp_path, monkeypatch, capsys):
    from volumelab.experiments.methods import unregister_method

    from volumelab.experiments import kinds

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(kinds, "_MODELS", dict(kinds._MODELS))  # a kind registered by an example goes with it
    module = types.ModuleType(f"design_example_{index}")  # dataclasses look their module up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    try:
        exec(compile(BLOCKS[index], f"docs/design.md[{index}]", "exec"), module.__dict__)
    finally:
        try:
            unregister_method("zero")
        except (KeyError, ValueError):
            pass
        from volumelab.optimizers.conditioning import unregister_estimator

        try:
            unregister_estimator("chunked")
        except KeyError:
            pass
    out = capsys.readouterr().out
    assert out.strip(), "each example prints what it computed"
    if "register_method" in BLOCKS[index]:
        assert out.strip().startswith("8 ") and "'gd'" in out and "'zero'" in out  # 2 widths x 2 seeds x 2 methods
    if "register_model_kind" in BLOCKS[index]:
        # 2 depths x 2 seeds x (G&C, its prior row, GD); G&C and GD report the task's test error.
        assert "12 runs stored" in out and "G&C test error" in out and "GD test error" in out


def test_design_shows_how_to_add_a_model_a_task_and_an_optimizer():
    text = DESIGN.read_text(encoding="utf-8")
    for heading in ("**A step rule.**", "**A method in sweeps.**", "**A model family.**", "**A task.**"):
        assert heading in text
