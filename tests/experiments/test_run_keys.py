"""The results store's key: everything that changes a row's numbers, nothing that does not."""

from __future__ import annotations

import sqlite3

import pytest

import volumelab
from volumelab import _results_version
from volumelab.experiments import load_sweep, plan_sweep, run_sweep
from volumelab.experiments.keys import canonical
from volumelab.experiments.store import ResultsStore
from volumelab.plotting.report import write_sweep_outputs

from sweep_testing import TINY, write_config


def _keys(tmp_path, text, **plan_options):
    config = load_sweep(write_config(tmp_path, text, "k.yaml"))
    return plan_sweep(config, **plan_options).keys


def test_batch_size_and_device_choice_leave_the_key(tmp_path):
    base = _keys(tmp_path, TINY)
    batch = _keys(tmp_path, TINY.replace("gnc: {eps: 0.1, samples: 3000}",
                                         "gnc: {eps: 0.1, samples: 3000, batch_size: 512, device: cpu}"))
    gd_device = _keys(tmp_path, TINY.replace("init_scale: 1.0e-3}", "init_scale: 1.0e-3, device: auto}"))
    assert base == batch == gd_device
    # --device cpu on this CPU-only machine resolves to the same device type as auto.
    assert _keys(tmp_path, TINY, device="cpu") == base


def test_what_changes_the_draws_changes_the_key(tmp_path):
    base = set(_keys(tmp_path, TINY))
    # "auto" resolves to the same sampler as naming it: same draws, same key ...
    auto_points = plan_sweep(load_sweep(write_config(tmp_path, TINY, "a.yaml")))
    direct = TINY.replace("gnc: {eps: 0.1, samples: 3000}", "gnc: {eps: 0.1, samples: 3000, sampler: direct}")
    direct_keys = set(_keys(tmp_path, direct))
    # ... while the direct sampler draws different numbers for the linear points (bartlett under auto).
    assert direct_keys != base
    gnc_tasks = [t for t in auto_points.tasks if t.method == "gnc"]
    assert gnc_tasks, "the tiny sweep has G&C tasks"
    # dtype and every numeric setting do change the key.
    assert set(_keys(tmp_path, TINY.replace("eps: 0.1", "eps: 0.11"))).isdisjoint(
        k for t in gnc_tasks for k in t.keys)


def test_auto_and_named_sampler_share_a_key_when_they_resolve_alike(tmp_path):
    text = TINY.replace("model.activation: [linear, tanh]", "model.activation: [linear]")
    named = text.replace("gnc: {eps: 0.1, samples: 3000}", "gnc: {eps: 0.1, samples: 3000, sampler: bartlett}")
    assert _keys(tmp_path, text) == _keys(tmp_path, named)


def test_results_version_is_in_the_key_and_stale_rows_are_rerun(tmp_path, monkeypatch, caplog):
    config = load_sweep(write_config(tmp_path, TINY))
    out = tmp_path / "out"
    first = run_sweep(config, out_dir=out)
    old_keys = set(first.plan.keys)
    current = _results_version.RESULTS_VERSION
    monkeypatch.setattr(_results_version, "RESULTS_VERSION", current + 1)
    with caplog.at_level("WARNING"):
        second = run_sweep(config, out_dir=out)
    assert set(second.plan.keys).isdisjoint(old_keys)
    assert second.stale_rows == first.ran_rows and second.ran_rows == first.ran_rows
    assert "older version of the code" in caplog.text
    # Nothing mixes: the outputs and load_results hold only rows of the current version.
    frame = volumelab.load_results(out)
    assert len(frame) == second.planned_rows and set(frame["results_version"]) == {current + 1}
    assert len(volumelab.load_results(out, all_versions=True)) == 2 * second.planned_rows
    write_sweep_outputs(second.plan, out)
    csv = (out / "results.csv").read_text().splitlines()
    assert len(csv) == 1 + second.planned_rows


def test_databases_from_before_the_results_version_open_and_count_as_stale(tmp_path):
    """An old database (no results_version or checksum column) is upgraded; its rows are never current."""
    from volumelab.experiments.store import _CHECKED

    path = tmp_path / "results.sqlite"
    old = [name for name in _CHECKED if name != "results_version"]
    connection = sqlite3.connect(str(path))
    connection.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, run_key TEXT NOT NULL UNIQUE, "
                       + ", ".join(old) + ")")
    values = {"sweep": "tiny", "scale": "base", "method": "gd", "method_type": "gd", "point": 0, "x": "4",
              "coords": "{}", "seed": 0, "status": "ok", "gen_loss": 0.5, "metrics": '{"gen_loss": 0.5}',
              "standard_errors": "{}", "diagnostics": "{}", "config": "{}", "started_at": "t", "finished_at": "t",
              "volumelab_version": "0.0", "torch_version": "2"}
    connection.execute(f"INSERT INTO runs (run_key, {', '.join(values)}) VALUES ('k', "
                       f"{', '.join('?' * len(values))})", list(values.values()))
    connection.commit()
    connection.close()
    with ResultsStore(tmp_path) as store:
        assert store.count_other_versions("tiny", "base", _results_version.RESULTS_VERSION) == 1
        assert store.sweeps() == [("tiny", "base")]
        assert store.damaged_rows() == {}  # its checksum was added on upgrade


@pytest.mark.parametrize("field", ["sweep", "scale"])
def test_store_sweeps_lists_what_a_folder_holds(tmp_path, field):
    config = load_sweep(write_config(tmp_path, TINY))
    run_sweep(config, out_dir=tmp_path / "out", scale="quick" if field == "scale" else None)
    with ResultsStore(tmp_path / "out") as store:
        assert store.sweeps() == [("tiny", "quick" if field == "scale" else "base")]


def test_the_random_initialization_keeps_stored_runs_keys_and_the_balanced_one_changes_them(tmp_path):
    """``initialization`` joined GD and NGD after runs were stored (from the random start): at ``random`` it is
    left out of the key, so those runs keep theirs; ``balanced`` is another computation with its own key."""
    text = TINY.replace("model.activation: [linear, tanh]", "model.activation: [linear]")
    base = _keys(tmp_path, text)
    named = _keys(tmp_path, text.replace("init_scale: 1.0e-3}", "init_scale: 1.0e-3, initialization: random}"))
    balanced = _keys(tmp_path, text.replace("init_scale: 1.0e-3}", "init_scale: 1.0e-3, initialization: balanced}"))
    assert named == base
    changed = set(base) - set(balanced)
    assert len(changed) == 2 * 3  # the GD runs (2 widths x 3 seeds); G&C's keep theirs
    for method in ("gd", "ngd"):
        assert canonical("method", method, {"lr": 0.1, "initialization": "random"}) == {"lr": 0.1}
        assert canonical("method", method, {"lr": 0.1, "initialization": "balanced"})["initialization"] == "balanced"
