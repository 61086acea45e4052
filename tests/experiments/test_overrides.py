"""``volumelab run CONFIG --set KEY=VALUE``: dotted keys, YAML values, validated like the file, recorded."""

from __future__ import annotations

import pytest
import yaml

import volumelab as vl
from volumelab.cli import main
from volumelab.experiments import ConfigError, load_sweep
from volumelab.experiments.config import apply_overrides

from sweep_testing import TINY, write_config

BASE = yaml.safe_load(TINY)


def test_dotted_keys_reach_nested_fields_and_dotted_mappings():
    tree = apply_overrides(BASE, ["seeds=4", "methods.gd.lr=0.1", "grid.model.width=[5, 20]",
                                  "scales.quick.set.methods.gnc.samples=100", "grid.model.depth=[1, 2]",
                                  "problem.rows=6"])
    assert tree["seeds"] == 4 and tree["methods"]["gd"]["lr"] == 0.1 and tree["problem"]["rows"] == 6
    assert tree["grid"] == {"model.activation": ["linear", "tanh"], "model.width": [5, 20], "model.depth": [1, 2]}
    assert tree["scales"]["quick"]["set"]["methods.gnc.samples"] == 100
    assert tree["methods"]["gd"]["steps"] == BASE["methods"]["gd"]["steps"]  # the rest is untouched
    assert BASE["seeds"] == 3  # and the input is not changed
    # A key the config does not have yet is created; a later override wins.
    assert apply_overrides(BASE, ["stream=1", "seeds=2", "seeds=5"])["seeds"] == 5


@pytest.mark.parametrize("item, words", [("seeds", "write KEY=VALUE"), ("=4", "write KEY=VALUE"),
                                          ("methods..lr=1", "write KEY=VALUE"), ("seeds=[1,", "not YAML")])
def test_malformed_overrides_are_named(item, words):
    with pytest.raises(ConfigError, match=words):
        apply_overrides(BASE, [item])


def test_overrides_are_validated_like_the_file(tmp_path):
    path = write_config(tmp_path, TINY)
    with pytest.raises(ConfigError, match=r"--set methods\.gd\.lrr=0\.1.*lrr"):
        load_sweep(path, ["methods.gd.lrr=0.1"])
    with pytest.raises(ConfigError, match="seeds"):
        load_sweep(path, ["seeds=-1"])
    assert load_sweep(path, ["seeds=2"]).seeds == 2


def test_run_with_overrides_runs_them_and_records_them(tmp_path, capsys):
    path = write_config(tmp_path, TINY)
    out = tmp_path / "out"
    assert main(["run", str(path), "--set", "seeds=1", "--set", "grid.model.width=[4]", "--out", str(out),
                 "--no-report"]) == 0
    assert "6 runs" in capsys.readouterr().out  # 1 seed x 2 activations x 1 width x (G&C, prior, GD)
    recorded = yaml.safe_load((out / "sweep.yaml").read_text())
    assert recorded["seeds"] == 1 and recorded["grid"]["model.width"] == [4]
    frame = vl.load_results(out)
    assert len(frame) == 6 and set(frame["model.width"]) == {4}
    assert main(["run", str(path), "--set", "methods.gd.lrr=1", "--out", str(tmp_path / "x")]) == 2
    assert "lrr" in capsys.readouterr().err
