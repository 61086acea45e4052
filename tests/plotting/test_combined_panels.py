"""A sweep's panels from several grid fields (``panel: [a, b]``): one panel per combination."""

from __future__ import annotations

import pandas as pd
import pytest

from tiny_sweep import TINY, write_config
from volumelab.cli import main
from volumelab.experiments import ConfigError, load_sweep, resolve_points
from volumelab.plotting.report.builder import combined_panels


def test_combined_panels_label_every_row_and_follow_the_grid_order():
    frame = pd.DataFrame({"rank": [2, 1, 2], "normalize": [True, False, False], "x": [2, 2, 4]})
    out, name, order = combined_panels(frame, ["rank", "normalize"], [[1, 2], [True, False]])
    assert name == "rank, normalize"
    assert list(out[name]) == ["rank=2, normalize=True", "rank=1, normalize=False", "rank=2, normalize=False"]
    assert order == ["rank=1, normalize=True", "rank=1, normalize=False", "rank=2, normalize=True",
                     "rank=2, normalize=False"]


def test_a_panel_list_must_name_grid_fields(tmp_path):
    text = TINY.replace("panel: model.activation", "panel: [model.activation, model.depth]")
    with pytest.raises(ConfigError, match="model.depth"):
        resolve_points(load_sweep(write_config(tmp_path, text)))


def test_a_sweep_with_two_panel_fields_reports_each_combination(tmp_path):
    text = (TINY.replace("panel: model.activation", "panel: [model.activation, model.normalize]")
                .replace("  model.activation: [linear, tanh]\n",
                         "  model.activation: [linear, tanh]\n  model.normalize: [false, true]\n")
                .replace("seeds: 3", "seeds: 2"))
    path = write_config(tmp_path, text)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    for activation in ("linear", "tanh"):
        for normalize in (False, True):
            label = f"activation={activation}, normalize={normalize}"
            assert f"- {label}:" in report  # one verdict line per combination
            assert f"| {label} | 4 |" in report  # and its own rows in the table
