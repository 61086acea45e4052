"""The SQLite results store: one row per run, NULL for missing losses, DataFrame view."""

from __future__ import annotations

import math

import pytest

import volumelab
from volumelab.experiments import ResultsStore, load_sweep, run_sweep
from volumelab.experiments.store import ResultRow

from sweep_testing import TINY, write_config


def _row(key, gen_loss):
    return ResultRow(run_key=key, sweep="s", scale="paper", method="gnc", method_type="gnc", point=0, x=5,
                     coords={"model.width": 5}, seed=0, status="ok", metrics={"gen_loss": gen_loss},
                     standard_errors={"gen_loss": float("nan")}, diagnostics={}, config={"a": 1},
                     seconds=0.1, started_at="t0", finished_at="t1", volumelab_version="v", torch_version="t")


def test_add_fetch_and_duplicates(tmp_path):
    with ResultsStore(tmp_path) as store:
        assert store.add([_row("a", 0.5), _row("b", None)]) == 2
        assert store.add([_row("a", 0.7)]) == 0  # the first result is kept
        rows = store.fetch()
        assert [r["run_key"] for r in rows] == ["a", "b"]
        assert rows[0]["gen_loss"] == 0.5 and rows[1]["gen_loss"] is None
        assert rows[0]["gen_loss_stderr"] is None  # NaN is stored as NULL
        assert store.existing_keys(["a", "z"]) == {"a"}


def test_no_acceptance_is_null_and_counted(tmp_path):
    text = TINY.replace("eps: 0.1", "eps: 1.0e-9").replace("samples: 3000", "samples: 500")
    config = load_sweep(write_config(tmp_path, text))
    out = tmp_path / "out"
    run_sweep(config, out_dir=out)
    frame = volumelab.load_results(out)
    gnc = frame[frame["method"] == "gnc"]
    assert len(gnc) == 12 and gnc["gen_loss"].isna().all()
    assert (gnc["status"] == "no_acceptance").all() and (gnc["accepted"] == 0).all()
    prior = frame[frame["method"] == "prior"]
    assert prior["gen_loss"].notna().all() and len(prior) == 12


def test_load_results_reads_parent_folders(tmp_path, tiny_config):
    config = load_sweep(tiny_config)
    run_sweep(config, scale="quick", out_dir=tmp_path / "runs" / "a")
    frame = volumelab.load_results(tmp_path / "runs")
    assert {"figure", "method", "model.width", "seed", "gen_loss"} <= set(frame.columns)
    assert set(frame["method"]) == {"gnc", "gd", "prior"}
    assert len(frame) == 4 * 3 * 3
    assert all(math.isfinite(v) for v in frame.loc[frame["method"] == "gd", "gen_loss"])
    with pytest.raises(FileNotFoundError):
        volumelab.load_results(tmp_path / "empty")
