"""Problem and model kinds (tagged unions), file problems, problem_seed, and the figures' keys."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3

import pytest

from volumelab import _results_version
from volumelab.experiments import ConfigError, load_sweep, plan_sweep, run_sweep
from volumelab.experiments.paper import FIGURES, figure_config_path
from volumelab.problems import make_problem, save_problem

from sweep_testing import TINY, write_config

SENSING = "problem: {task: sensing, rows: 4, cols: 4, rank: 1, measurements: 8}"


def _keys(tmp_path, text, name="k.yaml"):
    return plan_sweep(load_sweep(write_config(tmp_path, text, name))).keys


def _gen_losses(out):
    connection = sqlite3.connect(str(out / "results.sqlite"))
    try:
        return {(method, seed, point): gen for method, seed, point, gen in connection.execute(
            "SELECT method, seed, point, gen_loss FROM runs")}
    finally:
        connection.close()


def test_packaged_figures_keep_their_run_keys():
    """Every run key of the 11 figures at paper and quick scale, as before kinds and the method
    registry (commit 0e1780b, results version 2): stored paper-figure runs are not rerun.

    If this fails, a change altered what a figure's runs are keyed by (their settings, what
    they resolve to on a CPU, or the key's form), so every stored run of those figures
    would be rerun: make sure that is meant, then update the digest.

    Changed on purpose twice (issue 14): the quick scales of figures 2, 8 and 10, then of
    figures 4, 6 and 11, run G&C at the paper's eps by subset simulation, which rekeys their
    432 G&C and prior runs each; with those configs as they were before (commits 455e340 and
    a800dfe) the code still gives the former digests 1d4f8649...6e2db and 91a65f48...15498,
    so no other key moved.

    Key format 2 (issue 29) left the sweep and method names out of the key, which changed every key on
    purpose: the format-1 keys (``legacy_keys``, what stores written before hold) keep the digest they had,
    and each maps to one format-2 key (stores are migrated in place: test_key_migration.py); the
    format-2 keys are pinned by the second digest from here on.

    Changed on purpose again (issue 33): the quick scales of figures 2 and 4 run subset simulation with the
    pcn-readout kernel, which rekeys their 432 G&C and prior runs each; with those configs as they were
    (commit d485761) the code gives the former digests 7a489093...4a64f0 and 7842f97c...927a35, so no other
    key moved.

    And once more (issue 33, a rule fixed in advance on held-out problems): the same quick scales run it with
    population 1000 and 4 replicates, which rekeys the same 432 runs of each; with those configs as they were
    (commit 5ed3562) the code gives the former digests 294fc153...1081c0 and 69ddc7cd...28480f, so no other
    key moved.
    """
    original = _results_version.RESULTS_VERSION
    _results_version.RESULTS_VERSION = 2
    try:
        plans = {f"{name}/{scale}": plan_sweep(load_sweep(figure_config_path(name)), scale, device="cpu")
                 for name in FIGURES for scale in ("paper", "quick")}
    finally:
        _results_version.RESULTS_VERSION = original
    legacy = {name: plan.legacy_keys for name, plan in plans.items()}
    keys = {name: plan.keys for name, plan in plans.items()}
    assert sum(len(v) for v in legacy.values()) == sum(len(v) for v in keys.values()) == 12096
    digest = hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()
    assert digest == "e016be9aa97c410500189ef8d48412861f516eebb29347b8392a2a18cd838d64"
    digest = hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()
    assert digest == "05d2cd42a5ad9c4c50c878c4b94257f4e2f112a2b015e14b9666a5afbe07ce84"


def test_kind_defaults_and_the_old_task_field_give_the_same_keys(tmp_path):
    base = _keys(tmp_path, TINY)
    assert _keys(tmp_path, TINY.replace("{task: sensing,", "{kind: sensing,")) == base
    assert _keys(tmp_path, TINY.replace("{task: sensing, ", "{")) == base  # sensing is the default kind
    assert _keys(tmp_path, TINY.replace("model: {depth: 2}", "model: {kind: factorization, depth: 2}")) == base
    completion = _keys(tmp_path, TINY.replace("{task: sensing,", "{kind: completion,"))
    assert set(completion).isdisjoint(base)


def test_unknown_kinds_and_mixed_fields_are_named(tmp_path):
    for text, words in ((TINY.replace("{task: sensing,", "{kind: tensor,"), ("problem kind 'tensor'", "file")),
                        (TINY.replace("model: {depth: 2}", "model: {kind: tucker, depth: 2}"), ("model kind 'tucker'", "cp")),
                        (TINY.replace("{task: sensing,", "{kind: file, path: P.npz,"), ("problem",)),
                        (TINY.replace("{task: sensing,", "{task: sensing, kind: completion,"), ("disagree",))):
        with pytest.raises(ConfigError) as info:
            load_sweep(write_config(tmp_path, text, "bad.yaml"))
        assert "bad.yaml" in str(info.value) and all(w in str(info.value) for w in words), str(info.value)


def test_grid_over_the_problem_kind_and_the_old_path(tmp_path):
    text = TINY.replace("  model.width: [4, 8]\n", "  model.width: [4]\n  problem.task: [sensing, completion]\n")
    plan = plan_sweep(load_sweep(write_config(tmp_path, text)))
    assert [p.problem.kind for p in plan.points] == ["sensing", "completion", "sensing", "completion"]


def test_file_problem_is_the_same_for_every_seed_and_keyed_by_its_contents(tmp_path):
    """A sweep on a saved problem equals one whose problems are all made from that problem's seed."""
    folder = tmp_path / "sweeps"
    folder.mkdir()
    save_problem(make_problem("sensing", 4, 4, 1, 8, seed=7), folder / "P.npz")
    assert SENSING in TINY
    from_file = TINY.replace(SENSING, "problem: {kind: file, path: P.npz}")  # relative to the sweep file
    path = write_config(folder, from_file)
    config = load_sweep(path)
    assert config.problem.path == str((folder / "P.npz").resolve())
    run_sweep(config, out_dir=tmp_path / "file")
    seeded = TINY.replace("seeds: 3", "seeds: 3\nproblem_seed: 7")
    run_sweep(load_sweep(write_config(tmp_path, seeded)), out_dir=tmp_path / "seeded")
    assert _gen_losses(tmp_path / "file") == _gen_losses(tmp_path / "seeded")

    keys = plan_sweep(config).keys
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(folder / "P.npz", moved / "P.npz")
    assert _keys(moved, from_file) == keys  # the key holds the contents, not the path
    save_problem(make_problem("sensing", 4, 4, 1, 8, seed=8), moved / "P.npz")
    assert set(_keys(moved, from_file)).isdisjoint(keys)
    with pytest.raises(ConfigError, match="problem_seed"):
        load_sweep(write_config(folder, from_file + "problem_seed: 1\n", "bad.yaml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(write_config(tmp_path, from_file, "missing.yaml"))


def test_problem_seed_sets_the_problem_apart_from_the_run_seeds(tmp_path):
    base = _keys(tmp_path, TINY)
    seeded = _keys(tmp_path, TINY + "problem_seed: 0\n")
    # Seed 0's problem is the same, but the runs of seeds 1 and 2 are not: no key is shared.
    assert set(seeded).isdisjoint(base) and len(seeded) == len(base)
    assert _keys(tmp_path, TINY + "problem_seed: 0\n") == seeded
    # problem_seed is a field like any other: a grid sweeps it (one problem per value, many run seeds).
    text = TINY.replace("  model.width: [4, 8]\n", "  model.width: [4]\n  problem_seed: [3, 5]\n")
    plan = plan_sweep(load_sweep(write_config(tmp_path, text)))
    assert [p.problem_seed for p in plan.points] == [3, 5, 3, 5]
    assert {t.problem_seed for t in plan.tasks} == {3, 5}
    with pytest.raises(ConfigError, match="problem_seed"):
        load_sweep(write_config(tmp_path, TINY + "problem_seed: -1\n", "bad.yaml"))


def test_model_kinds_are_generated_from_the_families_fields():
    """A family is one definition: its sweep kind's settings are its ``setting`` fields, with the family's
    defaults and choices (no second copy), and a kind builds the family from the problem's shape."""
    import dataclasses
    import typing

    from volumelab.experiments.kinds import validate_model, build_model
    from volumelab.models import CPModel, DiagonalNetwork, FactorizationModel, MLPModel

    for kind, family in (("factorization", FactorizationModel), ("cp", CPModel), ("mlp", MLPModel),
                         ("diagonal", DiagonalNetwork)):
        settings = validate_model({"kind": kind})
        fields = {f.name: f for f in dataclasses.fields(family) if f.metadata.get("setting")}
        assert set(type(settings).model_fields) == {"kind"} | set(fields), kind
        for name, item in fields.items():
            assert getattr(settings, name) == item.default, (kind, name)
            if item.metadata["choices"]:
                assert typing.get_args(type(settings).model_fields[name].annotation) == tuple(item.metadata["choices"])
        shape = (4, 4, 4) if kind == "cp" else (1, 6) if kind in ("mlp", "diagonal") else (3, 5)
        model = build_model(settings, shape)
        assert isinstance(model, family) and model == family(**family.shape_settings(shape))
    # The family's own checks run when a sweep file is read, named at the field.
    with pytest.raises(ValueError, match="weight_mean 0.5 needs the gaussian prior"):
        validate_model({"kind": "factorization", "weight_mean": 0.5, "prior": "uniform"})
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        validate_model({"kind": "mlp", "width": 0})
