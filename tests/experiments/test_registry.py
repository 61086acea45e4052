"""Methods in sweeps: one registration each, settings from the optimizer, no names in generic code."""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

import volumelab
from volumelab.experiments import ConfigError, MethodSpec, get_method, load_sweep, plan_sweep, run_sweep, unregister_method
from volumelab.experiments.methods import csv_method_columns, extra_row_types, method_types, register_method
from volumelab.optimizers import NaturalGradientDescent, GradientDescent, GuessCheck
from volumelab.plotting.report import write_sweep_outputs
from volumelab.problems import make_problem

from sweep_testing import TINY, write_config

PACKAGE = Path(volumelab.__file__).parent
#: The one module of experiments/ and plotting/ allowed to name a method.
REGISTRATION = PACKAGE / "experiments" / "registry.py"


#: The run keys' migration table names the built-in methods whose fields joined their keys later: it records
#: history (what stored rows were keyed by), not behaviour.
KEY_TABLE = PACKAGE / "experiments" / "keys.py"


def _generic_sources() -> list[Path]:
    files = sorted((PACKAGE / "experiments").rglob("*.py")) + sorted((PACKAGE / "plotting").rglob("*.py"))
    assert REGISTRATION in files and KEY_TABLE in files
    return [path for path in files if path not in (REGISTRATION, KEY_TABLE)]


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants (f-string parts included); docstrings and ``__all__`` entries (the
    module's own names, checked as words) left out."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skipped.add(id(first.value))
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            skipped.update(id(item) for item in ast.walk(node.value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped]


def test_no_method_is_named_outside_its_registration():
    """experiments/ and plotting/ read methods through their registrations only.

    Checked in every file but experiments/registry.py:
    * nowhere (code, strings, docstrings, comments) the built-in methods' names or
      labels as words: ``gnc``, ``gd``, ``G&C``, ``GD`` (an underscore separates words,
      so ``gd_fit`` or ``GD_FRACTION`` count);
    * no string constant is a registered method type, extra-row type or name (``prior``)
      or a metric or setting name the methods register as CSV columns, or joins one with
      an underscore or colon (``x_prior``, ``prior_gen_loss``, ``:prior``). ("prior" as
      a word in prose is the model's prior, a field of every factorization, and may appear.)
    """
    word = re.compile(r"(?<![A-Za-z0-9])(gnc|gd|g&c)(?![A-Za-z0-9])", re.IGNORECASE)
    builtin = [get_method(name) for name in ("gnc", "gd")]
    names = {spec.type for spec in builtin} | {extra.type for spec in builtin for extra in spec.extra_rows}
    names |= {extra.row_name(spec.type) for spec in builtin for extra in spec.extra_rows}
    columns = {column.key or column.name for spec in builtin for column in spec.columns}
    columns |= {column.key or column.name for spec in builtin for extra in spec.extra_rows for column in extra.columns}
    alternatives = "|".join(sorted(names))
    joined = re.compile(rf"(?<![A-Za-z0-9])({alternatives})_\w|\w_({alternatives})(?![A-Za-z0-9])|:({alternatives})\b")
    offenders = []
    for path in _generic_sources():
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(PACKAGE)
        for number, line in enumerate(text.splitlines(), 1):
            if word.search(line):
                offenders.append(f"{where}:{number}: {line.strip()}")
        for number, value in _strings(ast.parse(text)):
            if value.strip() in columns | names or joined.search(value):
                offenders.append(f"{where}:{number}: string {value!r}")
    assert offenders == [], "\n".join(offenders)


def test_the_registration_module_registers_the_builtins():
    builtins = ("gnc", "gd", "ngd", "ntk", "prior_law", "collapse")
    assert set(builtins) <= set(method_types())
    for name in builtins:
        assert get_method(name).module == "volumelab.experiments.registry"
    text = REGISTRATION.read_text(encoding="utf-8")
    assert text.count("register_method(MethodSpec(") == len(builtins)


@pytest.mark.parametrize("method, optimizer, budget", [("gnc", GuessCheck, "samples"), ("gd", GradientDescent, "steps"),
                                                       ("ngd", NaturalGradientDescent, "steps")])
def test_settings_are_the_optimizers_fields_with_its_defaults(method, optimizer, budget):
    settings = get_method(method).settings
    fields = [f for f in dataclasses.fields(optimizer) if f.name != "progress"]
    observers = {option.name: option for option in get_method(method).observers}
    assert set(settings.model_fields) == {f.name for f in fields} | {budget, "type", "model"} | set(observers)
    for name, option in observers.items():
        assert settings.model_fields[name].default == option.default, name
    for item in fields:
        if item.default is not dataclasses.MISSING:
            assert settings.model_fields[item.name].default == item.default, item.name
        else:
            assert settings.model_fields[item.name].is_required(), item.name


def test_every_optimizer_field_is_settable_from_yaml_and_reaches_the_optimizer(tmp_path):
    text = TINY.replace(
        "gd: {lr: 1.0e-2, steps: 20, init_scale: 1.0e-3}",
        "gd: {lr: 1.0e-2, steps: 20, init_scale: 1.0e-3, ema_decay: 0.9, stability_eps: 1.0e-5, "
        "train_loss_threshold: 1.0e-9, log_every: 5, step_rule: group_rmsprop}").replace(
        "gnc: {eps: 0.1, samples: 3000}", "gnc: {eps: 0.1, samples: 3000, workers: 1, memory_fraction: 0.5}")
    point = plan_sweep(load_sweep(write_config(tmp_path, text))).points[0]
    gd = point.methods["gd"].optimizer()
    assert (gd.ema_decay, gd.stability_eps, gd.train_loss_threshold, gd.log_every, gd.step_rule) == (
        0.9, 1e-5, 1e-9, 5, "group_rmsprop")
    gnc = point.methods["gnc"].optimizer()
    assert (gnc.workers, gnc.memory_fraction) == (1, 0.5)
    # One source of defaults: unset fields are the optimizer's own.
    plain = plan_sweep(load_sweep(write_config(tmp_path, TINY))).points[0]
    assert plain.methods["gd"].optimizer() == GradientDescent(lr=1e-2, init_scale=1e-3)
    assert plain.methods["gnc"].optimizer() == GuessCheck(eps=0.1)


def _keys(tmp_path, text):
    return plan_sweep(load_sweep(write_config(tmp_path, text, "k.yaml"))).keys


def test_what_enters_the_key(tmp_path):
    gd = "gd: {lr: 1.0e-2, steps: 20, init_scale: 1.0e-3}"
    gnc = "gnc: {eps: 0.1, samples: 3000}"
    base = _keys(tmp_path, TINY)
    # Execution fields never change the numbers, so never the key.
    assert _keys(tmp_path, TINY.replace(gd, gd[:-1] + ", log_every: 3}")) == base
    assert _keys(tmp_path, TINY.replace(gnc, gnc[:-1] + ", workers: 1, memory_fraction: 0.9}")) == base
    # Fields stored rows ran with at their old values keep those rows' keys ...
    assert _keys(tmp_path, TINY.replace(gd, gd[:-1] + ", ema_decay: 0.99, stability_eps: 1.0e-6}")) == base
    # ... and change the key at any other value.
    for extra in ("ema_decay: 0.9", "stability_eps: 1.0e-4", "train_loss_threshold: 1.0e-8", "step_rule: group_rmsprop"):
        changed = _keys(tmp_path, TINY.replace(gd, gd[:-1] + f", {extra}}}"))
        assert changed != base and set(changed) & set(base), extra  # G&C's keys stay


def test_optimizer_errors_name_the_field(tmp_path):
    for replacement, field in (("momentum: 1.5", "methods.gd.momentum"), ("step_rule: nadam", "methods.gd.step_rule"),
                               ("ema_decay: 2.0", "methods.gd.ema_decay")):
        path = write_config(tmp_path, TINY.replace("init_scale: 1.0e-3}", f"init_scale: 1.0e-3, {replacement}}}"),
                            "bad.yaml")
        with pytest.raises(ConfigError) as info:
            load_sweep(path)
        assert field in str(info.value) and "bad.yaml" in str(info.value), str(info.value)
    path = write_config(tmp_path, TINY.replace("gnc: {eps: 0.1,", "gnc: {eps: 0.1, progress: true,"), "bad.yaml")
    with pytest.raises(ConfigError, match="methods.gnc.progress"):  # run-only: not a sweep setting
        load_sweep(path)


def test_method_names_that_would_clash_with_extra_rows_are_refused(tmp_path):
    assert "prior" in extra_row_types()
    for name in ("prior", "gd_prior"):
        path = write_config(tmp_path, TINY.replace("  gd: {lr", f"  {name}: {{type: gd, lr"), "bad.yaml")
        with pytest.raises(ConfigError, match="reserved"):
            load_sweep(path)


def test_registrations_cannot_take_each_others_names():
    gnc = get_method("gnc")
    assert register_method(gnc) is gnc  # registering the same spec again is a no-op
    clone = dataclasses.replace(gnc)
    with pytest.raises(ValueError, match="already registered"):
        register_method(clone)
    with pytest.raises(ValueError, match="'prior' is already"):
        register_method(dataclasses.replace(get_method("gd"), type="prior"))
    with pytest.raises(ValueError, match="'prior' is already"):
        register_method(dataclasses.replace(gnc, type="gnc_copy"))  # its extra rows' type is taken
    assert get_method("gnc") is gnc and "gnc_copy" not in method_types()


# ------------------------------------------------------------------ a third method, registered from outside


@pytest.fixture
def constant_method():
    import toy_method

    register_method(toy_method.SPEC, replace=True)
    yield toy_method.SPEC
    unregister_method(toy_method.SPEC.type)


def test_a_registered_method_runs_end_to_end(tmp_path, constant_method, monkeypatch):
    """A method registered outside volumelab: sweep rows, its CSV columns, its curve and its report column."""
    import matplotlib.figure

    text = TINY.replace("  gd: {lr", "  constant: {repeats: 2}\n  half: {type: constant, offset: 0.5, "
                        "repeats: 1e1}\n  gd: {lr").replace("samples: 3000", "samples: 400")
    config = load_sweep(write_config(tmp_path, text))
    figures = []
    original = matplotlib.figure.Figure.savefig

    def keep(figure, *args, **kwargs):
        figures.append(figure)
        return original(figure, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    outcome = run_sweep(config, out_dir=tmp_path / "out")
    assert outcome.planned_rows == outcome.ran_rows == 4 * 3 * 5  # points x seeds x (gnc, prior, gd, constant, half)
    section = write_sweep_outputs(outcome.plan, tmp_path / "out")

    frame = pd.read_csv(tmp_path / "out" / "results.csv")
    # Its metrics under their names, its declared setting as a settings column.
    assert {"w_norm", "method.offset", "repeats"} <= set(frame.columns) and "offset" not in frame
    zero = frame[frame["method"] == "constant"]
    assert len(zero) == 12 and set(zero["method_type"]) == {"constant"} and set(zero["repeats"]) == {2}
    for row in zero.itertuples():  # W = 0: L_gen is mean <B, W*>^2 of the seed's problem
        problem = make_problem("sensing", 4, 4, 1, 8, seed=row.seed)
        assert row.gen_loss == pytest.approx(problem.mean_squared_target(), rel=1e-12)
    half = frame[frame["method"] == "half"]
    assert half["w_norm"].to_numpy() == pytest.approx([0.5 * 4] * 12) and set(half["method.offset"]) == {0.5}
    # A method's columns are its own: empty on the other methods' rows.
    assert frame[frame["method_type"] != "constant"]["w_norm"].isna().all()
    assert frame[frame["method"] == "gd"]["repeats"].isna().all()

    legend = [text.get_text() for text in figures[0].axes[0].get_legend().get_texts()]
    assert "constant W" in legend and "half" in legend  # the registered label; a second one by its name
    report = (tmp_path / "out" / "report.md").read_text()
    assert "constant W median ± SE [IQR] (seeds with a loss)" in report
    assert "half median ± SE" in report and "constant W" not in section.verdict.rule
    # The verdict still reads the sampler, trainer and chance roles; the new role is not read.
    decision = section.verdict.panels[0].decision
    assert section.verdict is not None and decision.effect.n >= 1 and "G&C/chance" in decision.line


def test_a_worker_imports_the_module_that_registers_a_method(constant_method, monkeypatch):
    """A worker process that has not imported the registering module imports it (``SweepTask.method_module``)."""
    unregister_method("constant")
    monkeypatch.delitem(sys.modules, constant_method.module)
    with pytest.raises(KeyError, match="constant"):
        get_method("constant")
    assert get_method("constant", module=constant_method.module) is not None
    assert {"w_norm", "offset", "repeats"} <= {c.name for c in csv_method_columns()}


@pytest.mark.parametrize("method", ["gnc", "gd", "ngd"])
def test_documented_method_settings_are_the_generated_ones(method):
    """docs/experiments.md's "Method settings" table lists every setting of the built-in methods,
    their defaults and their execution fields (and, for GD and NGD, that the observer options are out of the
    key too)."""
    text = (PACKAGE.parents[1] / "docs" / "experiments.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith(f"| `{method}` ("))
    _, _, budget, fields, keyless, _ = row.split("|")
    settings = get_method(method).settings
    documented = dict(re.findall(r"`(\w+)` \(([^)]*)\)", fields))
    assert set(documented) | {settings.budget_field, "type", "model"} == set(settings.model_fields)
    assert re.match(rf"\s*`{settings.budget_field}`", budget)
    for name, default in documented.items():
        field = settings.model_fields[name]
        if field.is_required():
            assert default == "required", name
        elif field.default is None:
            assert default == "none", name
        elif isinstance(field.default, (int, float)) and not isinstance(field.default, bool):
            assert float(default) == field.default, name
        else:
            assert default == str(field.default), name
    observers = {option.name for option in settings.observer_options}
    assert set(re.findall(r"`(\w+)`", keyless)) - observers == set(settings.execution_fields)


def test_observer_settings_build_the_observers_and_a_bad_one_names_its_setting(tmp_path):
    """``keep_outputs``, ``trajectory_every`` and ``ntk_metrics`` are settings of a sweep's GD/NGD that build
    observers of the loop (not optimizer fields); a negative trajectory step is an error at that setting."""
    from volumelab.diagnostics.ntk import NTKLaziness
    from volumelab.optimizers.observers import FinalOutputs, Trajectory

    settings = get_method("ngd").settings(type="ngd", lr=0.1, steps=3, keep_outputs=True, trajectory_every=2,
                                          ntk_metrics=True)
    assert settings.observers() == [FinalOutputs(), Trajectory(2), NTKLaziness()]
    assert "trajectory_every" not in {f.name for f in dataclasses.fields(settings.optimizer())}
    assert get_method("gd").settings(type="gd", lr=0.1, steps=3).observers() == []
    with pytest.raises(ValueError, match="trajectory_every must be a non-negative integer, got -1"):
        get_method("gd").settings(type="gd", lr=0.1, steps=3, trajectory_every=-1)


def test_each_builtin_method_is_registered_as_what_it_is():
    """G&C estimates, GD and NGD optimize, the diagnostics measure: a measurement is its own kind of procedure,
    with no optimizer's settings (no progress bar), registered as such."""
    from volumelab.diagnostics.base import Measurement

    kinds = {name: get_method(name).procedure for name in ("gnc", "gd", "ngd", "ntk", "prior_law", "collapse")}
    assert kinds == {"gnc": "estimator", "gd": "optimizer", "ngd": "optimizer", "ntk": "measurement",
                     "prior_law": "measurement", "collapse": "measurement"}
    for name in ("ntk", "prior_law", "collapse"):
        procedure = get_method(name).optimizer
        assert issubclass(procedure, Measurement)
        assert "progress" not in {item.name for item in dataclasses.fields(procedure)}
    with pytest.raises(ValueError, match="procedure must be optimizer, estimator or measurement"):
        MethodSpec(type="odd", optimizer=get_method("ntk").optimizer, budget="draws",
                   runner=get_method("ntk").runner, procedure="oracle")
