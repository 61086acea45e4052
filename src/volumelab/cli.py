"""The ``volumelab`` command.

Every bad flag, value or file ends in a one-line ``volumelab: error: ...`` on stderr
and exit code 2, never a traceback (set ``VOLUMELAB_DEBUG=1`` to see one).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import click

from . import __version__
from ._counts import parse_count
from .errors import VolumelabError
from .experiments.executors import EXECUTORS
from .models import FactorizationModel, LayeredModel, model_families
from .models.layers import setting_fields
from .optimizers import GradientDescent, GuessCheck, RunResult
from .optimizers.gradient import trainers
from .optimizers.base import ResultSchema, format_value
from .optimizers.conditioning import estimators
from .optimizers.observers import FinalOutputs
from .problems import (
    DATASETS,
    INPUT_DISTRIBUTIONS,
    LOSSES,
    TENSOR_TASKS,
    SupervisedProblem,
    checked_classes,
    checked_inputs,
    load_problem,
    make_problem,
    make_supervised,
    make_tensor_problem,
)
from .samplers import available_samplers

logger = logging.getLogger("volumelab")


# --------------------------------------------------------------------- helpers
def _echo_json(payload: dict) -> None:
    click.echo(json.dumps(_json_safe(payload), indent=2, sort_keys=False))


def _json_safe(value):
    """Replace non-finite floats by ``None`` so the output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class CountType(click.ParamType):
    """A positive (or non-negative) integer that may be written ``1000000``, ``1e6`` or ``1_000_000``."""

    name = "count"

    def __init__(self, minimum: int = 1) -> None:
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = parse_count(value)
            except ValueError as exc:
                self.fail(f"{value!r} is not a whole number ({exc})", param, ctx)
            if not isinstance(number, int) or isinstance(number, bool):
                self.fail(f"{value!r} is not a whole number (write e.g. 1000000 or 1e6)", param, ctx)
        if number < self.minimum:
            self.fail(f"{value!r} must be at least {self.minimum}", param, ctx)
        return number


DEVICE_OPTION = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where to compute: auto uses CUDA when PyTorch sees a GPU (GD's small models always run on the CPU "
         "under auto).")


def _show_progress(as_json: bool) -> bool:
    return not as_json and sys.stderr.isatty()


#: ``value ± stderr`` (one formatting for every command: the result schemas' text uses it too).
_format = format_value


class FamilyType(click.ParamType):
    """``--model``: a registered model family (volumelab.models.register_family), looked up when the command
    runs, so a family registered by a plug-in imported before it is offered too."""

    name = "family"

    def convert(self, value, param, ctx):
        if value not in model_families():
            self.fail(f"{value!r} is not a model family; choose from {', '.join(model_families())}", param, ctx)
        return value

    def get_metavar(self, param, ctx=None):
        return "[" + "|".join(model_families()) + "]"
MATRIX_TASKS = ("sensing", "completion")
#: A generated tensor problem's defaults (``--model cp`` without ``--task``): 4x4x4, 16 measurements.
DEFAULT_DIMS, DEFAULT_TENSOR_MEASUREMENTS = (4, 4, 4), 16


class ClassesType(click.ParamType):
    """``--classes A,B``: two class labels (A is labelled -1, B +1); the data set checks their range."""

    name = "A,B"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            classes = tuple(int(part) for part in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not two comma-separated class labels (write e.g. 0,1)", param, ctx)
        if len(classes) != 2:
            self.fail(f"{value!r} must give exactly two classes (e.g. 0,1)", param, ctx)
        return classes


CLASSES_HELP = ("With --data digits or mnist1d: the two classes kept, A labelled -1 and B +1 "
                "[default: digits 3,8; mnist1d 0,1].")


def _supervised_problem(data: str, num_train: int, seed: int, loss: str | None = None,
                        classes: tuple[int, int] | None = None, inputs: str | None = None,
                        nu: float | None = None) -> SupervisedProblem:
    """The supervised problem of the options given; bad ``--classes``, ``--inputs`` or ``--nu`` a usage error naming
    the option."""
    try:
        checked_classes(data, classes)
    except VolumelabError as exc:
        raise click.BadParameter(str(exc), param_hint="'--classes'") from None
    try:
        checked_inputs(data, inputs or "gaussian", nu)
    except VolumelabError as exc:
        raise click.BadParameter(str(exc), param_hint="'--nu'" if nu is not None or inputs == "student_t"
                                 else "'--inputs'") from None
    return make_supervised(data, num_train, seed=seed, loss=loss, classes=classes, inputs=inputs or "gaussian", nu=nu)


class DimsType(click.ParamType):
    """A tensor's shape written ``4,4,4``: at least two positive integers."""

    name = "dims"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            dims = tuple(int(part) for part in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of sizes (write e.g. 4,4,4)", param, ctx)
        if len(dims) < 2 or min(dims) < 1:
            self.fail(f"{value!r} must give at least two positive sizes (e.g. 4,4,4)", param, ctx)
        return dims


def _make_generated(task, rows, cols, dims, rank, measurements, norm, seed):
    """A generated matrix or tensor problem from the flags (``None``: their defaults); a usage error when they clash."""
    if task in TENSOR_TASKS:
        given = [flag for flag, value in (("--rows", rows), ("--cols", cols)) if value is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} describe a matrix; a tensor task takes --dims (e.g. 4,4,4)")
        dims = dims or DEFAULT_DIMS
        entries = math.prod(dims)
        if measurements is None and DEFAULT_TENSOR_MEASUREMENTS >= entries:
            raise click.UsageError(f"--measurements defaults to {DEFAULT_TENSOR_MEASUREMENTS}, which is not below the "
                                   f"{entries} entries of the {'x'.join(map(str, dims))} tensor: pass --measurements "
                                   f"below {entries}")
        return make_tensor_problem(task, dims, rank or 1, measurements or DEFAULT_TENSOR_MEASUREMENTS,
                                   seed=seed, norm=norm or 1.0)
    if dims is not None:
        raise click.UsageError(f"--dims needs --task {' or '.join(TENSOR_TASKS)}")
    return make_problem(task or "sensing", rows or 5, cols or 5, rank or 1, measurements or 15, seed=seed,
                        norm=norm or 1.0)


def problem_options(func):
    """``--model``, and ``--problem P.npz`` or the generation flags of a matrix or a supervised problem."""
    options = [
        click.option("--model", "family", type=FamilyType(), default="factorization",
                     show_default=True,
                     help="Model family: a deep matrix factorization on a matrix problem, a CP tensor factorization "
                          "with --width components (each factor matrix a --depth product) on a tensor or matrix "
                          "problem, an MLP f(x) = W_d s(... s(W_1 x)) or a deep diagonal linear network "
                          "f(x) = <u_1 * ... * u_d, x> on supervised data (--data).", ),
        click.option("--problem", "problem_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="Problem file (.npz). Without it, one is generated from the flags below."),
        click.option("--task", type=click.Choice([*MATRIX_TASKS, *TENSOR_TASKS]), default=None,
                     help="Generate a problem of this task [default: sensing; tensor-sensing for --model cp]: "
                          "Gaussian measurements of unit Frobenius norm, or observed entries, of a matrix or of an "
                          "order-N tensor (--dims)."),
        click.option("--dims", type=DimsType(), default=None,
                     help="With a tensor task: the tensor's shape, e.g. 4,4,4 [default: 4,4,4; 16 measurements]."),
        click.option("--rows", type=click.IntRange(min=1), default=None, help="Rows of W* [default: 5]."),
        click.option("--cols", type=click.IntRange(min=1), default=None, help="Columns of W* [default: 5]."),
        click.option("--rank", type=click.IntRange(min=1), default=None, help="Rank of W* [default: 1]."),
        click.option("--measurements", type=click.IntRange(min=1), default=None,
                     help="Number of measurements m [default: 15]."),
        click.option("--norm", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Frobenius norm of W* [default: 1]."),
        click.option("--data", type=click.Choice(DATASETS), default=None,
                     help="With a model on supervised data (mlp, diagonal): the data set [default: teacher]: a "
                          "random tanh teacher on Gaussian inputs, one bundled with scikit-learn (digits: two of its "
                          "classes), or MNIST-1D generated by the mnist1d package (two classes; pip install "
                          "'volumelab[mnist1d]')."),
        click.option("--classes", type=ClassesType(), default=None, help=CLASSES_HELP),
        click.option("--inputs", type=click.Choice(INPUT_DISTRIBUTIONS), default=None,
                     help="With the teacher: its input distribution, covariance I_d each [default: gaussian]: "
                          "uniform on the sphere of radius sqrt(d), or a Student-t with --nu degrees of freedom."),
        click.option("--nu", type=float, default=None,
                     help="With --inputs student_t: its degrees of freedom, above 2 (moments of order k exist iff "
                          "k < nu)."),
        click.option("--train", "num_train", type=CountType(), default=None,
                     help="With supervised data: training points [default: 100]; the rest (1000 for the teacher) test."),
        click.option("--loss", type=click.Choice(LOSSES), default=None,
                     help="With supervised data: squared (regression) or logistic (labels -1/+1) "
                          "[default: logistic for digits, breast_cancer, mnist1d and the linear teachers, else "
                          "squared]."),
    ]
    for option in reversed(options):
        func = option(func)

    @functools.wraps(func)
    def wrapper(*args, family, problem_path, task, dims, rows, cols, rank, measurements, norm, data, classes,
                inputs, nu, num_train, loss, seed, **kwargs):
        matrix = {"task": task, "dims": dims, "rows": rows, "cols": cols, "rank": rank,
                  "measurements": measurements, "norm": norm}
        supervised = {"data": data, "classes": classes, "inputs": inputs, "nu": nu, "train": num_train, "loss": loss}
        chosen = model_families()[family]
        # A family whose draw is the measured array takes a matrix or tensor problem; any other, supervised data.
        wrong = [f"--{k}" for k, v in (supervised if chosen.scores_array else matrix).items() if v is not None]
        if wrong:
            need = _families_text(lambda other: other.scores_array != chosen.scores_array)
            raise click.UsageError(f"{', '.join(wrong)} need(s) --model {need}")
        if task in TENSOR_TASKS and chosen.problem_orders is not None:
            raise click.UsageError(f"--task {task} needs --model {_families_text(_takes_tensors)}")
        if problem_path is not None:
            given = [f"--{k}" for k, v in {**matrix, **supervised}.items() if v is not None]
            if given:
                raise click.UsageError(f"--problem cannot be combined with {', '.join(given)}")
            problem = load_problem(problem_path)
        elif not chosen.scores_array:
            problem = _supervised_problem(data or "teacher", num_train or 100, seed, loss, classes, inputs, nu)
        else:
            if task is None and _takes_tensors(chosen) and rows is None and cols is None:
                task = TENSOR_TASKS[0]  # a family built for tensors measures one by default
            problem = _make_generated(task, rows, cols, dims, rank, measurements, norm, seed)
        return func(*args, family=family, problem=problem, seed=seed, **kwargs)

    return wrapper


def _families_text(which=lambda family: True) -> str:
    """``a or b``: the names of the registered families ``which`` accepts."""
    return " or ".join(name for name, family in model_families().items() if which(family))


def _takes_tensors(family) -> bool:
    return family.problem_orders is None or any(order > 2 for order in family.problem_orders)


def _reject_foreign(settings: dict, chosen: str, owners_by_name: dict[str, type], selector: str, wording: str) -> None:
    """A usage error when an option given (``settings``) is not a settable field of ``chosen``: it names the flags
    and the owners that have them all (``wording`` with ``{owners}``), or says they apply to none."""
    foreign = [name for name in settings if name not in setting_fields(owners_by_name[chosen])]
    if not foreign:
        return
    flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
    owners = " or ".join(name for name, owner in owners_by_name.items()
                         if all(item in setting_fields(owner) for item in foreign))
    raise click.UsageError(f"{flags} {wording.format(owners=owners, s='s' if len(foreign) == 1 else '')}" if owners
                           else f"{flags} do(es) not apply to {selector} {chosen}")


def _build_model(family_name: str, problem, settings: dict) -> LayeredModel:
    """The model of ``family_name`` shaped for ``problem`` from the model options given (``settings``); a usage
    error naming the option when one does not apply to the family or a value does not fit it."""
    family = model_families()[family_name]
    fields = setting_fields(family)
    _reject_foreign(settings, family_name, model_families(), "--model", "need(s) --model {owners}")
    if ("abs_a" in settings or "abs_b" in settings) and settings.get("activation", fields["activation"].default) \
            != "abs":
        raise click.UsageError("--abs-a and --abs-b need --activation abs")
    supervised = isinstance(problem, SupervisedProblem)
    shape = (1, problem.num_features) if supervised else tuple(problem.shape)
    if not supervised and family.problem_orders is not None and len(shape) not in family.problem_orders:
        raise click.UsageError(f"this problem measures an order-{len(shape)} tensor: use --model "
                               f"{_families_text(_takes_tensors)}")
    try:
        model = family(**family.shape_settings(shape), **settings)
    except VolumelabError as exc:
        raise click.UsageError(f"--model {family_name}: {exc}") from None
    mismatch = model.problem_mismatch(problem)
    if mismatch:
        raise click.UsageError(mismatch)
    return model


def _setting_option(name: str, item, owners: list[str], everyone: list[str], selector: str,
                    defaults: dict[str, object], choices: tuple):
    """The option of one settable field (volumelab.settings.setting): its type from the field (the union of the
    owners' choices, a count, a range, a flag), its help from the field's ``doc``, the owners it applies to
    (``selector`` names them: ``--model`` or ``--method``) and each one's default. Its default is ``None``: only
    the options given are passed on, so each owner's own default applies."""
    flag = "--" + name.replace("_", "-")
    flags = (flag, *("--" + alias.replace("_", "-") for alias in item.metadata.get("aliases", ())))
    distinct = list(dict.fromkeys(defaults.values()))
    if len(distinct) == 1:
        default_text = "" if distinct[0] is None else f" [default: {distinct[0]}]"
    else:
        default_text = " [default: " + "; ".join(f"{selector} {owner}: {value}" for owner, value in defaults.items()) + "]"
    scope = "" if set(owners) == set(everyone) else f"With {selector} {' or '.join(owners)}. "
    help_text = f"{scope}{item.metadata.get('doc', '')}{default_text}".strip()
    low, high = item.metadata.get("minimum"), item.metadata.get("maximum")
    if isinstance(item.default, bool):
        return click.option(*flags, name, is_flag=True, default=None, help=help_text)
    if choices:
        kind = click.Choice(list(choices))
    elif item.metadata.get("count"):
        kind = CountType(minimum=1 if low is None else int(low))
    elif isinstance(item.default, int):
        kind = click.IntRange(min=low, max=high)
    elif low is not None or high is not None:
        exclusive = item.metadata.get("exclusive")
        low_open, high_open = exclusive if isinstance(exclusive, tuple) else (bool(exclusive), bool(exclusive))
        kind = click.FloatRange(min=low, max=high, min_open=low_open, max_open=high_open)
    else:
        kind = float
    return click.option(*flags, name, type=kind, default=None, help=help_text)


def _setting_options(func, owners_by_name: dict[str, type], selector: str, fields_of, into: str):
    """Every owner's settable fields as options (generated, never restated); the command receives the ones given
    as the keyword ``into``."""
    found: dict[str, tuple] = {}
    for owner_name, owner in owners_by_name.items():
        for name, item in fields_of(owner).items():
            entry = found.setdefault(name, (item, [], {}, {}))
            entry[1].append(owner_name)
            entry[2][owner_name] = item.default
            entry[3].update(dict.fromkeys(item.metadata.get("choices") or ()))
    names = list(found)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        given = {name: kwargs.pop(name) for name in names}
        settings = {name: value for name, value in given.items() if value is not None}
        return func(*args, **{into: settings}, **kwargs)

    for name in reversed(names):
        item, owners, defaults, choices = found[name]
        wrapper = _setting_option(name, item, owners, list(owners_by_name), selector, defaults,
                                  tuple(choices))(wrapper)
    return wrapper


def model_options(func):
    """Every registered family's settable fields as options (``--width``, ``--prior``, ``--parametrization``,
    ...), generated from the families; the command receives the ones given as ``model_settings``."""
    return _setting_options(func, model_families(), "--model", setting_fields, "model_settings")


def estimator_options(func):
    """``--method`` (a registered G&C estimator) and every estimator's settable fields as options
    (``--accept``, ``--population``, ``--sampler``, ...), generated from the estimators; the command receives the
    estimator's name as ``method`` and the options given as ``estimator_settings``."""
    summaries = "; ".join(f"{name}: {estimator.summary}" for name, estimator in estimators().items())
    func = _setting_options(func, estimators(), "--method", setting_fields, "estimator_settings")
    return click.option("--method", type=click.Choice(list(estimators())), default="rejection", show_default=True,
                        help=summaries)(func)


def common_options(func):
    options = [
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Seed of the data (when generated) and of the run."),
        DEVICE_OPTION,
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object (keys in the README)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


#: ``gnc --condition-test`` without ``--test-eps``: the GD run whose test error is the threshold (the settings of
#: the mlp-volume-train study's GD: full batch on the mean logistic loss from PyTorch's default initialization).
GD_TEST_EPS = {"lr": 0.5, "steps": 500, "init_scale": 1.0}


# ------------------------------------------------------------------------ CLI
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="volumelab")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """volumelab: Guess & Check vs gradient descent on deep factorizations."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="volumelab: %(levelname)s: %(message)s", stream=sys.stderr)


@cli.command()
@common_options
@problem_options
@model_options
@click.option("--eps", type=click.FloatRange(min=0), required=True,
              help="Accept draws with L_train < eps (with --accept train_error: training error < eps, and --eps 0 "
                   "the draws with no training errors).")
@click.option("--samples", type=CountType(), default=None,
              help="The budget (e.g. 1000000 or 1e6): " + "; ".join(
                  f"--method {name}: {estimator.budget_unit} [default: {estimator.default_budget:,}]"
                  for name, estimator in estimators().items()) + ".")
@estimator_options
@click.option("--save", "save_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the kept draws to this .npz file (numpy.load reads it).")
@click.option("--gd-lr", type=click.FloatRange(min=0, min_open=True), default=GD_TEST_EPS["lr"], show_default=True,
              help="With --condition-test and no --test-eps: the step size of the GD run whose test error is the "
                   "test threshold (the mean logistic loss, full batch, PyTorch's default initialization).")
@click.option("--gd-steps", type=CountType(), default=GD_TEST_EPS["steps"], show_default=True,
              help="With --condition-test and no --test-eps: that GD run's steps.")
def gnc(family, problem, seed, device, as_json, model_settings, eps, samples, method, estimator_settings,
        save_path, gd_lr, gd_steps) -> None:
    """Guess & Check: sample the prior, keep draws with L_train < eps."""
    estimator = estimators()[method]
    samples = estimator.default_budget if samples is None else samples
    _reject_foreign(estimator_settings, method, estimators(), "--method", "work{s} with --method {owners} only")
    if bool(estimator_settings.get("keep_samples")) != (save_path is not None):
        raise click.UsageError("--keep-samples K and --save PATH.npz go together")
    if eps == 0 and estimator_settings.get("accept") != "train_error":
        raise click.BadParameter("0 needs --accept train_error (then: no training errors); a training loss is "
                                 "never below 0", param_hint="'--eps'")
    if estimator_settings.get("accept") == "train_error" and "train_error" not in problem.tensors().metric_names:
        raise click.UsageError("--accept train_error needs a classification task (--model mlp with the logistic "
                               "loss); this problem has no training error")
    model = _build_model(family, problem, model_settings)
    gd_result = None
    if estimator_settings.get("condition_test") and estimator_settings.get("test_eps") is None:
        # The test threshold is GD's test error: how rare GD's solution is among the prior's interpolators.
        gd_result = GradientDescent(lr=gd_lr, init_scale=GD_TEST_EPS["init_scale"], device="cpu").run(
            problem, model, gd_steps, seed=seed)
        if gd_result.status == "diverged" or gd_result.metrics.get("test_error") is None:
            raise click.UsageError(f"the GD run for --condition-test ended {gd_result.status!r} without a test "
                                   "error; give --test-eps, or another --gd-lr")
        estimator_settings = dict(estimator_settings, test_eps=float(gd_result.metrics["test_error"]))
    optimizer = estimator(eps=eps, device=device, progress=_show_progress(as_json), **estimator_settings)
    result = optimizer.run(problem, model, samples, seed=seed)
    if gd_result is not None:
        result.metrics["gd_test_error"] = gd_result.metrics["test_error"]
        result.metrics["gd_train_error"] = gd_result.metrics.get("train_error")
        result.diagnostics["gd"] = {"lr": gd_lr, "steps": gd_steps, "init_scale": GD_TEST_EPS["init_scale"],
                                    "status": gd_result.status}
    _report(result, estimator.schema, problem, model, as_json, save_path=save_path)


def trainer_options(func):
    """The options of the step-based trainers (``gd``, ``ngd``)."""
    options = [
        click.option("--init-scale", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True,
                     help="Multiplier of PyTorch's default linear-layer initialization."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), required=True, help="Step size."),
        click.option("--steps", type=CountType(minimum=0), required=True,
                     help="Number of full-batch steps (e.g. 1e5)."),
        click.option("--optimizer", "step_rule", type=click.Choice(["gd", "group_rmsprop", "momentum", "adam"]),
                     default="gd", show_default=True,
                     help="Step rule; 'momentum' is plain steps with heavy-ball momentum; 'adam' is Adam (with "
                          "--parametrization mup, muP's Adam learning rates: Tensor Programs V, Table 3)."),
        click.option("--momentum", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
                     help="Heavy-ball coefficient (default 0.9 for --optimizer momentum, else 0)."),
        click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Stop once L_train falls below this."),
        click.option("--history", is_flag=True,
                     help="With --json: include the loss history (train and gen. loss every log interval)."),
        click.option("--save", "save_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Write the final layers and outputs (W of a factorization, f on [X_train; X_test] of "
                          "an MLP) to this .npz file."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _train(optimizer_class, family, problem, seed, device, as_json, model_settings, init_scale, lr, steps, step_rule,
           momentum, threshold, history, save_path, **extra) -> None:
    if step_rule == "momentum":
        step_rule, beta = "gd", 0.9 if momentum is None else momentum
    else:
        beta = momentum or 0.0
    model = _build_model(family, problem, model_settings)
    device = "cpu" if device == "auto" else device  # small dense models: the CPU is faster
    optimizer = optimizer_class(lr=lr, init_scale=init_scale, step_rule=step_rule, momentum=beta,
                                train_loss_threshold=threshold, device=device,
                                progress=_show_progress(as_json), **extra)
    result = optimizer.run(problem, model, steps, seed=seed, observers=[FinalOutputs()] if save_path else [])
    _report(result, optimizer.schema, problem, model, as_json, include_history=history, save_path=save_path)


def _add_trainer_command(name: str, trainer: type) -> None:
    """``volumelab <name>``: the trainer with GD's options and one per field of its own made by ``setting``."""

    def command(trainer_settings, **options) -> None:
        _train(trainer, **trainer_settings, **options)

    command.__doc__ = trainer.summary
    command.__name__ = name
    command = _setting_options(command, {name: trainer}, "--optimizer", setting_fields, "trainer_settings")
    for decorate in (trainer_options, model_options, problem_options, common_options, cli.command(name)):
        command = decorate(command)


for _name, _trainer in trainers().items():  # gd, ngd, and any trainer a plug-in registered before this import
    _add_trainer_command(_name, _trainer)


def _save_arrays(result: RunResult, path: Path | None) -> str | None:
    """Write the run's arrays to ``path`` (``.npz``); the path written, or ``None``."""
    if path is None:
        return None
    import numpy as np

    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **result.arrays)
    return str(path)


def _report(result: RunResult, schema: ResultSchema, problem, model, as_json: bool, include_history: bool = False,
            save_path: Path | None = None) -> None:
    """Print ``result``: its JSON, or the model's line and the lines its ``schema`` declares."""
    saved = _save_arrays(result, save_path)
    if as_json:
        payload = result.to_dict(include_history=include_history)
        payload["model"] = model.describe()
        payload["problem"] = problem.summary()
        if saved:
            payload["saved"] = saved
        _echo_json(payload)
        return
    click.echo(f"{problem!r}; model {model.family} width={model.width} depth={model.depth} "
               f"activation={model.activation_name}")
    # A family scored on data points reports a test loss; one whose draw is the measured array, L_gen.
    for line in schema.lines(result, "generalization loss" if model.scores_array else "test loss"):
        click.echo(line)
    if saved:
        what = ", ".join(f"{name} {tuple(value.shape)}" for name, value in result.arrays.items()) or "nothing"
        click.echo(f"saved {what} to {saved}")


@cli.command()
@click.option("--data", type=click.Choice(DATASETS), default="teacher", show_default=True,
              help="The data set: a random tanh teacher on Gaussian inputs, one bundled with scikit-learn, or "
                   "MNIST-1D (pip install 'volumelab[mnist1d]').")
@click.option("--classes", type=ClassesType(), default=None, help=CLASSES_HELP)
@click.option("--train", "num_train", type=CountType(), default=100, show_default=True,
              help="Training points: the NTK Gram matrix is num_train x num_train.")
@model_options
@click.option("--draws", type=CountType(), default=1, show_default=True,
              help="Independent prior draws of the weights; the eigenvalues are their means (with SE).")
@click.option("--ntk-method", type=click.Choice(["jacobian", "vp", "factors"]), default="jacobian", show_default=True,
              help="Jacobian contraction (vmap(jacrev)), NTK-vector products (jvp of vjp), or the MLP's "
                   "outer-product gradient factors (sum over layers of (G G^T) * (A A^T), no Jacobian; "
                   "fastest): the same Gram.")
@click.option("--memory-bytes", type=CountType(), default=None,
              help="Working memory one Gram may use, in bytes (e.g. 8e9) [default: 1e9, about 1 GiB].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the data split and of the draws.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (keys in the README).")
def ntk(data, classes, num_train, model_settings, draws, ntk_method, memory_bytes, seed, as_json) -> None:
    """The empirical NTK of an MLP at initialization on the training set: its extreme eigenvalues."""
    from .diagnostics.spectrum import NTKAtInit

    problem = _supervised_problem(data, num_train, seed, classes=classes)
    model = _build_model("mlp", problem, model_settings)
    measurement = NTKAtInit(ntk_method=ntk_method, **({"memory_bytes": memory_bytes} if memory_bytes else {}))
    try:
        result = measurement.run(problem, model, draws, seed=seed)
    except VolumelabError as exc:  # the library names its field; here the flag is what the user can change
        raise VolumelabError(str(exc).replace("raise memory_bytes", "raise --memory-bytes (or lower --train)")) \
            from None
    metrics, errors = result.metrics, result.standard_errors
    if result.status != "ok":
        raise VolumelabError(f"the NTK of prior draw {result.diagnostics.get('non_finite_draw')} is not finite")
    if as_json:
        _echo_json({**result.to_dict(), "model": model.describe(), "problem": problem.summary()})
        return
    click.echo(f"{problem!r}; model mlp width={model.width} depth={model.depth} activation={model.activation_name} "
               f"parametrization={model.parametrization}; {draws} draw(s)")
    for name in ("lambda_min", "lambda_max"):
        spread = f" (spread over draws {metrics[f'{name}_std']:.4g})" if metrics.get(f"{name}_std") is not None else ""
        click.echo(f"{name}:".ljust(20) + _format(metrics[name], errors.get(name)) + spread)
    if metrics.get("condition") is not None:
        click.echo("condition number:".ljust(20) + _format(metrics["condition"]))
    if metrics.get("lambda_min_limit") is not None:
        click.echo("infinite width:".ljust(20) + f"lambda_min {_format(metrics['lambda_min_limit'])}, "
                   f"lambda_max {_format(metrics['lambda_max_limit'])} (arc-cosine kernels)")
    click.echo("num_train:".ljust(20) + f"{metrics['num_train']}")


@cli.group()
def theory() -> None:
    """Mechanisms behind the paper's theorems, measured next to their closed forms."""


@theory.command("lyapunov")
@click.option("--width", type=click.IntRange(min=1), required=True, help="Layer size k (k x k layers).")
@click.option("--depth", type=click.IntRange(min=1), required=True, help="Layers in each product.")
@click.option("--samples", type=CountType(), default=1000, show_default=True,
              help="Independent products (at least 2); the standard errors are their spread.")
@click.option("--variance", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Entry variance sigma^2 of every layer [default: 1/width, the paper's hidden-layer scaling].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the layers.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (keys in the README).")
def theory_lyapunov(width, depth, samples, variance, seed, as_json) -> None:
    """Lyapunov exponents of products of Gaussian matrices (QR method) against Newman's closed form."""
    from .diagnostics.lyapunov import lyapunov_exponents

    if samples < 2:
        raise click.BadParameter(f"must be at least 2 (the standard error is their spread), got {samples}",
                                 param_hint="'--samples'")
    estimate = lyapunov_exponents(width, depth, samples, seed=seed, variance=variance)
    if as_json:
        _echo_json(estimate.to_dict())
        return
    click.echo(f"products of {depth} Gaussian {width}x{width} layers, entry variance {estimate.variance:.4g}, "
               f"{samples} products (QR method)")
    click.echo(f"{'i':>3}  {'estimate':>22}  {'closed form':>12}  {'z':>6}")
    for i, (value, stderr, exact) in enumerate(zip(estimate.exponents, estimate.exponents_stderr,
                                                   estimate.closed_form), start=1):
        z = (value - exact) / stderr if stderr > 0 else float("nan")
        click.echo(f"{i:>3}  {_format(value, stderr):>22}  {exact:>12.5f}  {z:>6.2f}")
    click.echo("closed form: lambda_i = (1/2)[log(2 sigma^2) + psi((k - i + 1)/2)] (Newman 1986); "
               "z = (estimate - closed form) / SE")
    collapse, errors = estimate.collapse, estimate.collapse_stderr
    click.echo("normalized product P_D / ||P_D||_F, means over the products:")
    for name, label in (("sigma2_over_sigma1", "sigma_2 / sigma_1"), ("top_share", "top share of ||P||_F^2"),
                        ("rank_one_distance", "distance to rank one"), ("effective_rank", "effective rank"),
                        ("log_sigma1_over_sigma2_per_layer", "log(sigma_1/sigma_2) / D")):
        if name in collapse:
            click.echo(f"  {label:<26}{_format(collapse[name], errors[name])}")
    if width > 1:
        click.echo(f"  (log(sigma_1/sigma_2) / D tends to lambda_1 - lambda_2 = "
                   f"{estimate.closed_form[0] - estimate.closed_form[1]:.5f})")
    if collapse.get("unresolved_products"):
        click.echo(f"warning: in {collapse['unresolved_products']} of {samples} products sigma_2 / sigma_1 is below "
                   "1e-12, float64 rounding: the collapse statistics there are floors, not measurements")


@theory.command("prior-law")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the problem (when generated) and of the draws.")
@problem_options
@model_options
@click.option("--draws", type=CountType(), default=20000, show_default=True,
              help="Prior draws of W (at least 200); each statistic's SE is its spread over 10 batches of them.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (keys in the README).")
def theory_prior_law(family, problem, seed, model_settings, draws, as_json) -> None:
    """Theorem 1's mechanism: the prior's W against its Gaussian limit, and how dependent L_train and L_gen are."""
    from .diagnostics.prior_law import ENTRY_KEYS, LOSS_KEYS, PriorLaw

    if not issubclass(model_families()[family], PriorLaw.model_types):
        raise click.UsageError(f"theory prior-law needs --model "
                               f"{_families_text(lambda other: issubclass(other, PriorLaw.model_types))} "
                               "(an end-to-end matrix)")
    model = _build_model(family, problem, model_settings)
    weight_mean = model.weight_mean
    if draws < 200:
        raise click.BadParameter(f"must be at least 200 (10 batches of 20 for the standard errors), got {draws}",
                                 param_hint="'--draws'")
    result = PriorLaw().run(problem, model, draws, seed=seed)
    keys = ENTRY_KEYS + LOSS_KEYS + ("prior_train_loss", "prior_gen_loss")
    if as_json:
        _echo_json({"status": result.status, "draws": draws, **{k: result.metrics.get(k) for k in keys},
                    "stderr": {k: result.standard_errors.get(k) for k in keys}})
        return
    click.echo(f"{draws} prior draws of W ({model.rows}x{model.cols}, width {model.width}, depth {model.depth}, "
               f"{model.activation_name}{f', weight mean {weight_mean:g}' if weight_mean else ''}); "
               "Gaussian-limit value in brackets")
    limits = {"entry_variance": f"{1 / model.rows:.4g} if linear", "mardia_z": "N(0, 1)"}
    for key in keys:
        value = result.metrics.get(key)
        if value is not None:
            click.echo(f"  {key:<26}{_format(value, result.standard_errors.get(key)):>24}  "
                       f"[{limits.get(key, '' if key.startswith('prior_') else '0')}]")


@cli.group()
def problem() -> None:
    """Make and inspect problems."""


@problem.command("make")
@click.option("--task", type=click.Choice([*MATRIX_TASKS, *TENSOR_TASKS]), required=True,
              help="sensing: Gaussian measurement matrices of unit Frobenius norm; completion: observed entries; "
                   "tensor-sensing, tensor-completion: the same for an order-N tensor of shape --dims.")
@click.option("--rows", type=click.IntRange(min=1), default=None, help="Rows of the ground truth W* (matrix tasks).")
@click.option("--cols", type=click.IntRange(min=1), default=None, help="Columns of W* (matrix tasks).")
@click.option("--dims", type=DimsType(), default=None,
              help="Tensor tasks: the shape of the ground truth, e.g. 4,4,4.")
@click.option("--rank", type=click.IntRange(min=1), required=True,
              help="Rank of W* (tensor tasks: its CP rank, the number of rank-one terms).")
@click.option("--measurements", type=click.IntRange(min=1), required=True,
              help="Number of measurements m (below rows*cols).")
@click.option("--norm", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Frobenius norm of W*.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the problem's data stream.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file (.npz; the suffix is added if missing).")
def problem_make(task, rows, cols, dims, rank, measurements, norm, seed, out) -> None:
    """Generate a sensing or completion problem (of a matrix or an order-N tensor) and save it as .npz."""
    if task in TENSOR_TASKS and dims is None:
        raise click.UsageError(f"--task {task} needs --dims (e.g. 4,4,4)")
    if task in MATRIX_TASKS and (rows is None or cols is None):
        raise click.UsageError(f"--task {task} needs --rows and --cols")
    made = _make_generated(task, rows, cols, dims, rank, measurements, norm, seed)
    path = made.save(out)
    click.echo(f"wrote {path}: {made!r}")


@problem.command("show")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def problem_show(path, as_json) -> None:
    """Describe a problem file: task, shape, measurements, test basis size, chance level of W = 0."""
    loaded = load_problem(path)
    if loaded.task == "supervised":
        info = {key: value for key, value in loaded.summary().items() if key != "source"}
    else:
        info = {**{key: value for key, value in loaded.summary().items() if key in ("task", "rows", "cols", "shape")},
                "measurements": loaded.num_measurements, "test": loaded.num_test,
                "has_ground_truth": loaded.W_star is not None,
                "mean_squared_target": loaded.mean_squared_target(),
                **{k: v for k, v in loaded.metadata.items() if k != "source"}}
    if as_json:
        _echo_json(info)
    else:
        for key, value in info.items():
            click.echo(f"{key}: {value}")


@cli.group()
def store() -> None:
    """Check or repair the results store (results.sqlite) of an output folder."""


def _store_lines(check) -> list[str]:
    if check.ok:
        state = "intact"
    elif not check.readable:
        state = f"unreadable by SQLite: {check.error}"
    else:
        state = f"{len(check.damaged)} damaged rows"
    lines = [f"{check.path}: {state}"]
    lines.append(f"  rows found {check.rows}, intact {check.intact}, damaged {len(check.damaged)}, "
                 f"intact arrays {check.arrays}")
    for name, count in check.sweeps.items():
        lines.append(f"  {name}: {count} intact rows")
    for key, why in list(check.damaged.items())[:10]:
        lines.append(f"  damaged: {key}: {why}")
    if len(check.damaged) > 10:
        lines.append(f"  ... and {len(check.damaged) - 10} more")
    return lines


@store.command("check")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def store_check(folder, as_json) -> None:
    """What is intact in FOLDER's results store and what is not (exit 1 when something is damaged)."""
    from .experiments.store import check_store

    check = check_store(folder)
    if as_json:
        _echo_json(check.to_dict())
    else:
        for line in _store_lines(check):
            click.echo(line)
        if not check.ok:
            click.echo(f"run 'volumelab store repair {folder}' to keep the {check.intact} intact rows; the next run "
                       "recomputes the rest")
    if not check.ok:
        raise click.exceptions.Exit(1)


@store.command("repair")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def store_repair(folder, as_json) -> None:
    """Salvage every intact row of FOLDER's results store into a new one (the damaged file is kept beside it as
    results.sqlite.damaged-<time>); rerun the sweep to recompute the rest."""
    from .experiments.store import repair_store

    check = repair_store(folder)
    if as_json:
        _echo_json(check.to_dict())
        return
    if check.kept_as is None:
        click.echo(f"{check.path}: intact ({check.intact} rows); nothing to repair")
        return
    click.echo(f"salvaged {check.intact} of {check.rows} rows found ({check.arrays} with arrays) into {check.path}; "
               f"the damaged file is kept as {check.kept_as}")
    click.echo("rerun the same sweep command to recompute the lost runs")


@store.command("merge")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def store_merge(folder, as_json) -> None:
    """Merge the shard stores of FOLDER/shards (written by the jobs of --executor slurm or submitit-local) into
    FOLDER's results store, verifying every row's checksum; merging again adds nothing. `volumelab run` does
    this by itself before it runs and as each job ends."""
    from .experiments.shards import SHARDS_FOLDER, merge_shards, shard_paths
    from .experiments.store import ResultsStore

    if not shard_paths(folder):
        raise click.BadParameter(f"no shard stores (*.sqlite) in {str(Path(folder) / SHARDS_FOLDER)!r}",
                                 param_hint="FOLDER")
    with ResultsStore(folder) as results:
        merged = merge_shards(results, folder)
        total = results.count()
    if as_json:
        _echo_json({"store": str(Path(folder) / "results.sqlite"), "rows": total, "shards": [
            {"path": str(m.source), "added": m.added, "present": m.present, "damaged": dict(m.damaged)}
            for m in merged]})
        return
    for m in merged:
        damaged = f", {len(m.damaged)} damaged (not merged)" if m.damaged else ""
        click.echo(f"{m.source.name}: {m.added} rows added, {m.present} already stored{damaged}")
    click.echo(f"{sum(m.added for m in merged)} rows added from {len(merged)} shards; "
               f"{Path(folder) / 'results.sqlite'} holds {total} rows")


@cli.command("export")
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--format", "file_format", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True,
              help="csv, or parquet (keeps the column types; needs pyarrow: pip install 'volumelab[parquet]').")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File to write [default: DIR/results-all.csv or .parquet].")
def export_command(folder, file_format, out) -> None:
    """Write the results table of every run stored under DIR (a sweep's output folder, or a parent of several
    such as runs/quick) as CSV or Parquet: the table of volumelab.load_results(DIR), its columns documented
    in docs/experiments.md ("The results table")."""
    from .experiments.results import export_results
    from .experiments.store import DATABASE_NAME

    out = out or folder / f"results-all.{file_format}"
    if out.name.startswith(DATABASE_NAME):
        raise click.BadParameter(f"{str(out)!r} is a results store's name; name another file", param_hint="--out")
    try:
        table = export_results(folder, out, file_format=file_format)
    except ImportError as exc:
        if file_format != "parquet":
            raise
        raise click.UsageError(f"--format parquet: {exc}") from None
    except FileNotFoundError as exc:
        raise click.BadParameter(str(exc), param_hint="DIR") from None
    click.echo(f"wrote {out}: {len(table)} rows, {len(table.columns)} columns")


@cli.command()
@click.option("--samples", type=CountType(), default=4_000_000, show_default=True,
              help="G&C prior draws (e.g. 4e6).")
@click.option("--width", type=click.IntRange(min=1), default=40, show_default=True, help="Hidden width k.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the problem and of both runs.")
@DEVICE_OPTION
def demo(samples, width, seed, device) -> None:
    """A small end-to-end run: G&C and GD on a generated 5x5 rank-1 sensing problem, and what it shows."""
    made = make_problem("sensing", 5, 5, 1, 15, seed=seed)
    model = FactorizationModel(5, 5, width, 2)
    click.echo(f"{made!r}, depth-2 linear factorization of width {width}")
    click.echo(f"Guess & Check: {samples:,} Gaussian prior draws, eps = 0.02 ...")
    gnc_result = GuessCheck(eps=0.02, device=device, progress=_show_progress(False)).run(made, model, samples,
                                                                                           seed=seed)
    click.echo("Gradient descent: group_rmsprop, lr 1e-2, init 1e-3, 5,000 steps ...")
    gd_device = "cpu" if device == "auto" else device  # small dense models: the CPU is faster
    gd_result = GradientDescent(lr=1e-2, init_scale=1e-3, step_rule="group_rmsprop",
                                device=gd_device).run(made, model, 5000, seed=seed)
    m, e = gnc_result.metrics, gnc_result.standard_errors
    click.echo("")
    click.echo(f"  prior (chance) generalization loss: {_format(m['prior_gen_loss'], e['prior_gen_loss'])}")
    click.echo(f"  G&C generalization loss:            {_format(m['gen_loss'], e['gen_loss'])}"
               f"   ({m['accepted']} of {m['samples']:,} draws accepted)")
    click.echo(f"  GD generalization loss:             {_format(gd_result.metrics['gen_loss'])}"
               f"   (train loss {_format(gd_result.metrics['train_loss'])})")
    click.echo("")
    for line in _demo_conclusion(gnc_result, gd_result):
        click.echo(line)


def _demo_conclusion(gnc_result: RunResult, gd_result: RunResult) -> list[str]:
    """What the demo's numbers show, in words, with the uncertainty that decides it."""
    m, e = gnc_result.metrics, gnc_result.standard_errors
    prior = m["prior_gen_loss"]
    lines = ["What this run shows (measured, one seed):"]
    if m["gen_loss"] is None:
        lines.append("  G&C accepted no draw: raise --samples to compare it with chance.")
    else:
        difference = prior - m["gen_loss"]
        error = math.hypot(e["gen_loss"] or 0.0, e["prior_gen_loss"] or 0.0)
        if error > 0 and abs(difference) > 2 * error:
            verdict = "better than" if difference > 0 else "worse than"
            lines.append(f"  G&C generalizes {verdict} chance: its loss is {m['gen_loss'] / prior:.2f} x the "
                         f"prior's ({abs(difference) / error:.1f} standard errors from it).")
        else:
            lines.append(f"  G&C's loss is within 2 standard errors of chance ({m['gen_loss'] / prior:.2f} x "
                         "the prior's): no measurable advantage.")
    gd_loss = gd_result.metrics["gen_loss"]
    if gd_loss is None:
        lines.append(f"  GD {gd_result.status}: no loss to compare.")
    else:
        lines.append(f"  GD's loss is {gd_loss / prior:.2g} x the prior's: gradient descent from small "
                     "initialization generalizes far beyond chance.")
    lines.append("  The paper (arXiv 2506.03931, Thm. 1, Fig. 1) predicts that G&C's advantage over chance shrinks "
                 "as width grows while GD's stays; compare --width 5 with --width 160.")
    return lines


# ------------------------------------------------------------------- sweeps
def sweep_options(func):
    options = [
        click.option("--executor", type=click.Choice(list(EXECUTORS)), default="local", show_default=True,
                     help="Run points in this process / a local process pool, as Ray tasks, or as a SLURM job "
                          "array through submitit (submitit-local: the same jobs as local processes); "
                          "docs/experiments.md says which to use where."),
        click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Parallel workers (local: processes; ray: CPUs of a local Ray instance; slurm, "
                          "submitit-local: jobs of the array, each writing its own shard store)."),
        click.option("--address", default=None, help="Ray cluster address (with --executor ray)."),
        click.option("--job-param", "job_params", multiple=True, metavar="KEY=VALUE",
                     help="A submitit job parameter (with --executor slurm or submitit-local; YAML VALUE; "
                          "repeatable): --job-param slurm_partition=cpu --job-param timeout_min=120 "
                          "--job-param cpus_per_task=4 [default timeout_min: 1440]."),
        click.option("--no-report", is_flag=True, help="Only run and store; skip CSV, plots and report."),
        click.option("--force", is_flag=True,
                     help="Use an output folder that holds another sweep, deleting that sweep's outputs."),
        DEVICE_OPTION,
    ]
    for option in reversed(options):
        func = option(func)
    return func


class _ProgressLines:
    """Progress as plain lines on stderr when it is not a terminal (logs, CI, ``nohup``)."""

    def __init__(self, label: str, every_seconds: float = 30.0) -> None:
        self.label, self.every, self.last = label, every_seconds, time.monotonic()

    def __call__(self, done: int, total: int, share: float, seconds: float, *,
                 seconds_left: float | None = None) -> None:
        now = time.monotonic()
        if done < total and now - self.last < self.every:
            return
        self.last = now
        # The driver's estimate, from the measured cost of the finished tasks (experiments.progress).
        left = f", about {_duration(seconds_left)} left" if seconds_left is not None and done < total else ""
        click.echo(f"{self.label}: {done}/{total} runs, {share:.0%} of the work, {_duration(seconds)} elapsed{left}",
                   err=True)


def _job_parameters(items) -> dict:
    """``--job-param KEY=VALUE`` items as submitit's parameters (YAML values)."""
    import yaml

    parameters = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--job-param")
        try:
            parameters[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"{item!r}: the value is not YAML ({' '.join(str(exc).split())})",
                                     param_hint="--job-param") from None
    return parameters


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _run_one(config_path: Path, scale: str | None, out: Path | None, options: dict):
    """Run one sweep file and write its outputs; returns its report section (``None`` with --no-report)."""
    from .experiments import load_sweep, plan_sweep, run_sweep
    from .experiments.driver import describe_work
    from .plotting.report import write_sweep_outputs

    overrides = tuple(options.get("overrides") or ())
    config = load_sweep(config_path, overrides, scale=scale)
    source = str(config_path) + "".join(f" --set {item}" for item in overrides)
    plan = plan_sweep(config, scale, source=source, device=options["device"], stream=options["stream"])
    out = out or Path("runs") / plan.scale / config.name
    note = config.scale_note(plan.scale)
    stream = f", stream {plan.stream}" if plan.stream else ""
    click.echo(f"{config.name} ({plan.scale} scale{stream}): {describe_work(plan.tasks)} -> {out}"
               + (f"\n  scale note: {note}" if note else ""))
    progress = None if sys.stderr.isatty() else _ProgressLines(f"{config.name} ({plan.scale})")
    try:
        # The config with its overrides (sweep.yaml in the output folder records it as run).
        outcome = run_sweep(config if overrides else config_path, scale=scale, out_dir=out,
                            executor=options["executor"],
                            workers=options["workers"], address=options["address"], device=options["device"],
                            force=options["force"], progress=progress, stream=plan.stream,
                            job_parameters=_job_parameters(options.get("job_params") or ()))
    except KeyboardInterrupt:
        _stopped(plan, out)
        raise
    if outcome.stale_rows:
        click.echo(f"  {outcome.stale_rows} stored runs came from an older version of the code; they were rerun "
                   "and are left out of the outputs")
    if outcome.ran_rows == 0 and outcome.stored_before == outcome.planned_rows:
        click.echo(f"  all {outcome.planned_rows} runs already stored in {out}; nothing to run")
    else:
        click.echo(f"  ran {outcome.ran_rows} runs in {outcome.seconds:.1f} s "
                   f"({outcome.stored_before} were stored already) -> {out / 'results.sqlite'}")
    if options["no_report"]:
        return None
    section = write_sweep_outputs(outcome.plan, out)
    click.echo(f"  wrote {out / 'results.csv'}, {out / 'plots'}/{config.name}.png|pdf, {out / 'report.md'}")
    if section.verdict is not None:
        click.echo(f"  {section.verdict.heading}: {section.verdict.sentence.replace('**', '')}")
        for panel in section.verdict.panels:
            decision = getattr(panel, "decision", None)
            if decision is not None:
                click.echo(f"    {panel.panel + ': ' if panel.panel else ''}{decision.line}")
    return section


def _stopped(plan, out: Path) -> None:
    """After Ctrl-C (or SIGTERM): how many of the sweep's runs are saved, and how to resume."""
    from .experiments.store import ResultsStore

    saved = None
    try:
        if (out / "results.sqlite").is_file():
            with ResultsStore(out, create=False) as store:
                saved = len(store.existing_keys(plan.keys))
    except Exception:  # the message must not hide the interruption
        saved = None
    count = f"{saved} of {len(plan.keys)}" if saved is not None else "the finished"
    click.echo(f"volumelab: stopped: {count} runs saved in {out}; rerun the same command to resume", err=True)


@cli.command("run")
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--scale", default=None,
              help="A scale the config defines (the figures: quick or paper) [default: the config's base values, "
                   "labelled by its base_scale: 'base', or 'paper' for the figure configs].")
@sweep_options
@click.option("--stream", type=click.IntRange(min=0), default=None, metavar="K",
              help="Replicate stream: K > 0 redraws every random stream of every seed (problems, data splits, "
                   "draws, initializations); its rows share the output folder, keyed apart [default: 0, the "
                   "experiment itself, or the config's stream].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder [default: runs/<scale>/<config name>].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, validated like the file and recorded in the output's sweep.yaml "
                   "(dotted KEY, YAML VALUE; repeatable): --set seeds=4 --set grid.model.width=[5,20] --set "
                   "methods.gd.lr=0.1.")
def run_command(config_path, scale, out, **options) -> None:
    """Run the sweep described by a YAML CONFIG; finished runs are never repeated.

    \b
    CONFIG: name, problem {task, rows, ...}, model {width, depth, ...}, methods {gnc: {eps,
    samples}, gd: {lr, steps}, ...}, grid {model.width: [5, 40, 160]}, seeds, and optional
    scales, rules, claim; docs/experiments.md ("Writing a sweep") has every field.

    It prints the work (runs, prior draws, GD steps) before starting; the packaged
    figure configs' base values are the paper's budgets (hours): use --scale quick.
    """
    if not config_path.is_file():
        raise click.BadParameter(f"file {str(config_path)!r} does not exist", param_hint="CONFIG")
    _run_one(config_path, scale, out, options)


@cli.command("reproduce")
@click.argument("figure", metavar="FIGURE|all")
@click.option("--scale", type=click.Choice(["quick", "paper"]), default="quick", show_default=True,
              help="quick: minutes on a laptop CPU; paper: the paper's budgets.")
@sweep_options
@click.option("--stream", type=click.IntRange(min=0), default=None, metavar="K",
              help="Replicate stream: K > 0 redraws every random stream of every seed (problems, data splits, "
                   "draws, initializations); its rows share the output folders, keyed apart [default: 0, "
                   "the published experiment].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder of the figure, as for run [default: runs/<scale>/<figure>]; with all, the "
                   "parent folder: each figure goes to <out>/<figure>, the combined report to <out>.")
def reproduce_command(figure, scale, out, **options) -> None:
    """Reproduce a figure of arXiv 2506.03931 (figure1 ... figure11) or a study (ngd-invariance,
    ngd-invariance-width, ngd-completion, ngd-sparse, ngd-sparse-depth, ngd-mlp: arXiv 2111.11542; mlp-ntk,
    mlp-convergence, mlp-lazy, mlp-lr-transfer, mlp-volume, mlp-volume-train, mlp-implicit-reg, mlp-moments, mlp-width-needed: arXiv
    2205.13507 and the volume hypothesis on real data; volume-scale: G&C by subset simulation against GD and SGD
    as the training set grows (Chiang et al., Pakman et al., Peleg & Hein); mlp-lr-transfer-sgd, mlp-lr-transfer-adam: learning-rate
    transfer as Tensor Programs V measures it; depth-rare, width-rare: figures 2 and 1 at eps 1e-4 and 1e-3 by
    subset simulation; theory-width, theory-depth: the mechanisms of the paper's Theorems 1 and 2 measured
    next to theory, and theory-width-mean outside Theorem 1 (a prior of non-zero mean); theory-relu-width, theory-rank-depth: its open questions, ReLU under width and ground
    truth of rank 1-3 under depth); tensor-width, tensor-depth: its first open question, CP tensor
    factorizations against components and depth next to matrices; all runs every one."""
    from .experiments import figure_config_path, resolve_figure_names
    from .plotting.report import write_report

    names = resolve_figure_names(figure)
    root = out if out is not None and len(names) > 1 else Path("runs") / scale
    sections = []
    for name in names:
        folder = root / name
        if out is not None and len(names) == 1:
            folder = _former_reproduce_folder(out, name, scale)
        section = _run_one(figure_config_path(name), scale, folder, options)
        if section is not None:
            section.image = f"{name}/{section.image}"
            section.extra_images = [f"{name}/{image}" for image in section.extra_images]
            sections.append(section)
    if len(sections) > 1:
        stream = f", stream {options['stream']}" if options["stream"] else ""
        write_report(sections, root, title=f"volumelab: reproduction ({scale} scale{stream})")
        click.echo(f"combined report: {root / 'report.md'} and {root / 'report.html'}")
        for section in sections:
            if section.verdict is not None:
                click.echo(f"  {section.name}: {section.verdict.outcome}")


def _former_reproduce_folder(out: Path, name: str, scale: str) -> Path:
    """Where ``reproduce NAME --out OUT`` writes: ``OUT`` itself (as ``run --out``), or ``OUT/NAME`` when that
    holds this figure's outputs at this scale and ``OUT`` does not (written before 2026-12-06, when one figure's
    ``--out`` was its parent folder), so those runs are resumed, not recomputed."""
    from .experiments.driver import folder_sweep

    former = out / name
    if folder_sweep(out) is None and former.is_dir() and folder_sweep(former) == (name, scale):
        click.echo(f"note: {former} holds {name}'s {scale} runs (written when --out named the parent folder); "
                   f"using it. --out now names the figure's own folder, as for run.")
        return former
    return out


# ----------------------------------------------------------------------- entry
def _interrupt_on_sigterm():
    """SIGTERM (a cluster's scheduler, ``kill``) interrupts like Ctrl-C, so a sweep says what it saved; returns the
    handler it replaced (``None`` off the main thread, where signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    debug = bool(os.environ.get("VOLUMELAB_DEBUG"))
    previous = _interrupt_on_sigterm()
    try:
        # Outside standalone mode click returns a command's exit code (click.exceptions.Exit) instead of raising.
        code = cli.main(args=argv, prog_name="volumelab", standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool) and code:
            return code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort as exc:
        # Click turns both Ctrl-C and an EOFError into Abort; only the first is the user's doing.
        if isinstance(exc.__context__, KeyboardInterrupt) or exc.__context__ is None:
            click.echo("volumelab: aborted", err=True)
            return 130
        if debug:
            raise
        return _internal_error(exc.__context__)
    except click.ClickException as exc:
        if debug:
            raise
        message = " ".join(exc.format_message().split())
        click.echo(f"volumelab: error: {message} (see 'volumelab --help')", err=True)
        return 2
    except (VolumelabError, OSError) as exc:
        if debug:
            raise
        click.echo(f"volumelab: error: {' '.join(str(exc).split())}", err=True)
        return 2
    except Exception as exc:  # a bug, not bad input: one line, exit 1
        if debug:
            raise
        return _internal_error(exc)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _internal_error(exc: BaseException) -> int:
    click.echo(f"volumelab: internal error: {type(exc).__name__}: {' '.join(str(exc).split())} "
               "(set VOLUMELAB_DEBUG=1 for the traceback and please report it)", err=True)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
