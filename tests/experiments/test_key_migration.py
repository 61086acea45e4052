"""Run keys in format 2 hold no sweep or method name; stores written in format 1 are migrated in place.

``data/format1/`` is the store of ``data/format1.yaml`` as volumelab wrote it at commit 33e3b3a (key format 1,
G&C with its prior rows and GD with kept outputs), copied here unchanged.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

import volumelab as vl
from volumelab.experiments import ConfigError, load_sweep, plan_sweep, run_sweep
from volumelab.experiments.keys import KEY_MIGRATIONS, KeyMigration, canonical, declare_key_migration
from volumelab.experiments.store import ResultsStore
from volumelab.plotting.report import write_sweep_outputs

from sweep_testing import TINY, write_config

DATA = Path(__file__).parent / "data"


def _stored(out: Path) -> dict[str, tuple]:
    connection = sqlite3.connect(str(out / "results.sqlite"))
    try:
        runs = {key: (method, point, seed, metrics) for key, method, point, seed, metrics in connection.execute(
            "SELECT run_key, method, point, seed, metrics FROM runs")}
        arrays = {key: data for key, data in connection.execute("SELECT run_key, data FROM arrays")}
    finally:
        connection.close()
    return runs, arrays


def test_a_format_1_store_is_migrated_in_place_and_nothing_reruns(tmp_path):
    out = tmp_path / "out"
    shutil.copytree(DATA / "format1", out)
    config = load_sweep(DATA / "format1.yaml")
    plan = plan_sweep(config)
    before_runs, before_arrays = _stored(out)
    # The format-1 keys computed now are exactly those the old code stored (own rows, prior rows, arrays).
    assert set(plan.legacy_keys) == set(before_runs) and len(before_runs) == 12
    assert set(before_arrays) <= set(plan.legacy_keys) and len(before_arrays) == 4
    assert set(plan.keys).isdisjoint(before_runs)
    outcome = run_sweep(config, out_dir=out, progress=False)
    assert outcome.ran_rows == 0 and outcome.planned_rows == 12
    after_runs, after_arrays = _stored(out)
    renames = plan.legacy_renames()
    assert set(after_runs) == set(plan.keys)
    # Every row and every array moved to its new key with its contents untouched.
    assert {renames[key]: row for key, row in before_runs.items()} == after_runs
    assert {renames[key]: data for key, data in before_arrays.items()} == after_arrays
    # A second run finds everything under the new keys; the outputs read the migrated rows.
    assert run_sweep(config, out_dir=out, progress=False).ran_rows == 0
    write_sweep_outputs(plan, out)
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 12
    assert len(vl.load_arrays(out)) == 4


def test_the_outputs_of_an_unmigrated_store_migrate_it_first(tmp_path):
    out = tmp_path / "out"
    shutil.copytree(DATA / "format1", out)
    plan = plan_sweep(load_sweep(DATA / "format1.yaml"))
    write_sweep_outputs(plan, out)  # reporting alone, without running
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 12
    with ResultsStore(out) as store:
        assert store.existing_keys() == set(plan.keys)


def test_sweep_and_method_names_leave_the_key(tmp_path):
    base = plan_sweep(load_sweep(write_config(tmp_path, TINY, "a.yaml")))
    renamed = TINY.replace("name: tiny", "name: other").replace("  gd: {", "  trainer: {type: gd, ")
    other = plan_sweep(load_sweep(write_config(tmp_path, renamed, "b.yaml")))
    assert sorted(base.keys) == sorted(other.keys)
    assert set(base.legacy_keys).isdisjoint(other.legacy_keys)  # format 1 held both names


def test_two_methods_that_are_the_same_runs_are_a_config_error(tmp_path):
    twice = TINY.replace("  gd: {lr: 1.0e-2", "  gd2: {type: gd, lr: 1.0e-2, steps: 20, init_scale: 1.0e-3}\n"
                                            "  gd: {lr: 1.0e-2")
    with pytest.raises(ConfigError, match="methods 'gd2' .* and 'gd' .* are the same runs"):
        plan_sweep(load_sweep(write_config(tmp_path, twice, "c.yaml")))


def test_the_migration_table_is_applied_once_per_field():
    # A field that joined a key later leaves it at the value older rows had, and enters it otherwise.
    assert canonical("model", "mlp", {"kind": "mlp", "width": 8, "bias": False}) == {"kind": "mlp", "width": 8}
    assert canonical("model", "mlp", {"kind": "mlp", "width": 8, "bias": True})["bias"] is True
    # A renamed field enters under its old name; a field that matters only somewhere enters only there.
    assert canonical("problem", "sensing", {"kind": "sensing", "rows": 5}) == {"task": "sensing", "rows": 5}
    assert "nonzero" not in canonical("problem", "supervised", {"data": "teacher", "nonzero": 3})
    assert canonical("problem", "supervised", {"data": "sparse_teacher", "nonzero": 3})["nonzero"] == 3
    # The training error's tie-break enters only subset runs on the training error, and only when not "none".
    gnc = {"method": "subset", "accept": "train_error", "tie_break": "margin"}
    assert canonical("method", "gnc", gnc)["tie_break"] == "margin"
    assert "tie_break" not in canonical("method", "gnc", dict(gnc, tie_break="none"))
    assert "tie_break" not in canonical("method", "gnc", dict(gnc, accept="train_loss"))
    assert "tie_break" not in canonical("method", "gnc", dict(gnc, method="rejection"))
    # Every line names a field once; a conflicting second declaration is an error, a repeat a no-op.
    lines = [(m.part, m.kind, m.field) for m in KEY_MIGRATIONS]
    assert len(lines) == len(set(lines))
    assert declare_key_migration(KEY_MIGRATIONS[0]) is KEY_MIGRATIONS[0]
    with pytest.raises(ValueError, match="declared already"):
        declare_key_migration(KeyMigration("model", "mlp", "bias", old=True))


def test_observers_leave_the_key_and_a_run_without_their_record_reruns(tmp_path):
    plain = load_sweep(write_config(tmp_path, TINY, "plain.yaml"))
    keeping = load_sweep(write_config(tmp_path, TINY.replace("init_scale: 1.0e-3}", "init_scale: 1.0e-3, "
                                                             "keep_outputs: true}"), "keep.yaml"))
    assert plan_sweep(plain).keys == plan_sweep(keeping).keys  # what a run records never changes its numbers
    out = tmp_path / "out"
    first = run_sweep(plain, out_dir=out, progress=False)
    gd_rows = sum(len(task.keys) for task in first.plan.tasks if task.method == "gd")
    assert gd_rows == 2 * 2 * 3 and not vl.load_arrays(out)
    numbers = vl.load_results(out).set_index(["method", "seed", "model.width", "model.activation"])["gen_loss"]
    # Asked for outputs it did not record, each GD run runs again (and only those), now with its arrays ...
    second = run_sweep(keeping, out_dir=out, progress=False)
    assert second.ran_rows == gd_rows and len(vl.load_arrays(out)) == gd_rows
    again = vl.load_results(out).set_index(["method", "seed", "model.width", "model.activation"])["gen_loss"]
    assert again.sort_index().equals(numbers.sort_index())  # with the same numbers
    # ... and a run that recorded more than is asked for is reused.
    assert run_sweep(plain, out_dir=out, progress=False).ran_rows == 0


def test_ngds_unlabeled_inputs_enter_the_key_only_when_set():
    """A stored NGD row (default Fisher, before `unlabeled` existed) keeps its key: the field is left out at its
    default None; a population or train+unlabeled run's key has it."""
    from volumelab.experiments.methods import get_method

    settings = get_method("ngd").settings
    plain = settings(lr=0.1, steps=10).key_settings()
    assert "unlabeled" not in plain and plain["fisher"] == "train"
    assert settings(lr=0.1, steps=10, fisher="train", unlabeled=32).key_settings()["unlabeled"] == 32
    assert plain == {key: value for key, value in settings(lr=0.1, steps=10, unlabeled=None).key_settings().items()}
