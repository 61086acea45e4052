"""The built-in methods of sweeps: Guess & Check, gradient descent and natural gradient descent,
one registration each.

This is the only module of :mod:`volumelab.experiments` and :mod:`volumelab.plotting`
that names a method: everything else reads the :class:`~volumelab.experiments.methods.MethodSpec`
registered here (settings, runner, CSV columns, plot style, verdict role, extra rows).
"""

from __future__ import annotations

import dataclasses

from ..device import resolve_device
from ..diagnostics.kernel_regression import KernelRegression
from ..diagnostics.lyapunov import ProductCollapse
from ..diagnostics.max_margin import LimitDirections
from ..diagnostics.ntk import NTKLaziness
from ..diagnostics.prior_law import ENTRY_KEYS, LOSS_KEYS, PriorLaw
from ..diagnostics.spectrum import NTKAtInit
from ..optimizers import GradientDescent, GuessCheck, NaturalGradientDescent, RunResult
from ..errors import OptimizerError
from ..optimizers.conditioning import estimators
from ..optimizers.observers import FinalOutputs, Trajectory
from .methods import (
    CHANCE,
    SAMPLER,
    TRAINER,
    Column,
    CountColumn,
    ExtraRows,
    MethodRunner,
    MethodSpec,
    ObserverOption,
    register_method,
)

__all__ = ["COLLAPSE", "GD", "GNC", "NGD", "NTK", "PRIOR_LAW", "estimator_method"]


# ------------------------------------------------------------------ the two runners
def _run_each_seed(problems, model, settings, seeds) -> list[RunResult]:
    """One run per seed (G&C's estimators, the measurements: the NTK at initialization, the prior's law, the
    collapse): each seed's work is independent of the others, and each run spreads its own work over the cores."""
    optimizer = settings.optimizer(progress=False)
    return [optimizer.run(problem, model, settings.budget, seed=seed) for problem, seed in zip(problems, seeds)]


def _run_batch(problems, model, settings, seeds) -> list[RunResult]:
    """All seeds of a point as one batch (GD, NGD), with the observers its settings ask for."""
    optimizer = settings.optimizer(progress=False)
    return optimizer.run_batch(list(problems), model, settings.budget, list(seeds), observers=settings.observers())


# ------------------------------------------------------------------ Guess & Check


def _resolved_gnc(model, settings) -> dict:
    """What the estimator's settings resolve to on this machine that decides its random numbers (rejection:
    the sampler and block size; subset simulation draws the prior's latent weights itself: nothing)."""
    return settings.optimizer().estimator().resolved(model, resolve_device(settings.device).type)


def _gnc_work(settings) -> tuple[float, str]:
    return float(settings.samples), estimators()[settings.method].budget_unit


def _prior_row(result: RunResult) -> tuple[str, dict, dict]:
    """The chance level of a G&C run: the prior's mean losses over all its draws."""
    metrics = {"gen_loss": result.metrics.get("prior_gen_loss"),
               "train_loss": result.metrics.get("prior_train_loss"),
               "samples": result.metrics.get("samples")}
    errors = {"gen_loss": result.standard_errors.get("prior_gen_loss"),
              "train_loss": result.standard_errors.get("prior_train_loss")}
    if "prior_test_error" in result.metrics:  # a classification task
        metrics["test_error"] = result.metrics["prior_test_error"]
        errors["test_error"] = result.standard_errors.get("prior_test_error")
    return "ok", metrics, errors


#: The chance level every G&C estimator's runs store beside their own rows (``prior``, or ``<method>_prior``).
_PRIOR_ROWS = (ExtraRows(
    type="prior", build=_prior_row, name=lambda method: "prior" if method == "gnc" else f"{method}_prior",
    role=CHANCE, label="prior", style={"label": "prior (chance)", "color": "#555555", "marker": None,
                                      "linestyle": "--"},
    columns=(Column("samples", dtype="count"), Column("eps", source="setting"), Column("test_error"))),)


GNC = register_method(MethodSpec(
    type="gnc",
    optimizer=GuessCheck,
    procedure="estimator",
    budget="samples",
    budget_unit="prior draws",
    # One task per seed: a seed's draws are independent of the others, and each task
    # spreads its blocks over every core.
    runner=MethodRunner(_run_each_seed, batched=False, resolved=_resolved_gnc, work=_gnc_work),
    # The sampler enters the key as what it resolves to (``auto`` may pick the same one as a name).
    execution_fields=frozenset({"device", "batch_size", "sampler", "workers", "memory_fraction"}),
    # Fields that joined its key after rows were stored: volumelab.experiments.keys.KEY_MIGRATIONS.
    role=SAMPLER,
    label="G&C",
    style={"color": "#1f77b4", "marker": "o", "linestyle": "-"},
    columns=(Column("prior_gen_loss"), Column("accepted", dtype="count"), Column("samples", dtype="count"),
             Column("acceptance_rate"), Column("acceptance_rate_low"), Column("acceptance_rate_high"),
             Column("log_volume"), Column("log_volume_mean_log"), Column("log_volume_mean_log_stderr"),
             Column("ess"), Column("rhat"), Column("evaluations", dtype="count"),
             Column("min_eps_reached"), Column("eps", source="setting"), Column("test_error"),
             Column("prior_test_error")),
    extra_rows=_PRIOR_ROWS,
    no_loss="accepted nothing; with method subset also: did not reach eps, budget too small, or chains not mixed",
    count_column=CountColumn("accepted", "{label} accepted (median) / seeds without acceptance"),
))


def estimator_method(estimator: type, *, type: str | None = None, label: str | None = None,
                     style: dict | None = None) -> MethodSpec:
    """A sweep method for a G&C estimator (a registered :class:`~volumelab.optimizers.ConditionalEstimator`),
    one seed per run like ``gnc``, with its own settings, its chance-level rows and a ``results.csv`` column for
    each numeric metric its schema declares. ``register_method(estimator_method(Mine))`` in the estimator's
    file makes ``methods: {mine: {eps: ..., samples: ...}}`` a sweep method.

    (The built-in estimators run as ``gnc`` with ``method: rejection|subset``, whose run keys predate this.)
    """
    declared = estimator.schema.metrics if estimator.schema is not None else ()
    columns = [Column(metric.name, dtype="count" if metric.kind == "count" else "float") for metric in declared
               if metric.name not in ("gen_loss", "train_loss", "eps", "accept", "samples")]
    columns += [Column("samples", dtype="count"), Column("eps", source="setting")]

    def resolved(model, settings) -> dict:
        return settings.optimizer().resolved(model, resolve_device(settings.device).type)

    def work(settings) -> tuple[float, str]:
        return float(settings.samples), estimator.budget_unit

    name = type or estimator.name
    # Each registration's extra rows have their own row type.
    prior_rows = (dataclasses.replace(_PRIOR_ROWS[0], type=f"{name}_prior", name=lambda method: f"{method}_prior"),)
    return MethodSpec(
        type=name,
        optimizer=estimator,
        procedure="estimator",
        budget="samples",
        budget_unit=estimator.budget_unit,
        runner=MethodRunner(_run_each_seed, batched=False, resolved=resolved, work=work),
        execution_fields=frozenset({"device", "workers"}),
        role=SAMPLER,
        label=label or f"G&C ({estimator.name})",
        style=style or {},
        columns=tuple(columns),
        extra_rows=prior_rows,
        no_loss="accepted nothing",
        count_column=CountColumn("accepted", "{label} accepted (median) / seeds without acceptance")
        if any(metric.name == "accepted" for metric in declared) else None,
    )


# ------------------------------------------------------------------ gradient descent
#: What a trained model's rows report besides the losses: the test error of a classifier,
#: the effective rank of a factorization's W, and a linear predictor's sparsity, margins and limit-direction cosines.
_TRAINED_METRICS = (Column("test_error"), Column("effective_rank"), Column("sparsity"), Column("margin_l2"),
                    Column("margin_l1"), Column("cos_l2_margin"), Column("cos_l1_margin"), Column("cos_min_norm"),
                    Column("ntk_lambda_min"), Column("ntk_lambda_max"), Column("ntk_change"),
                    Column("param_change"), Column("loss_rate"), Column("predicted_rate"), Column("kernel_gen_loss"),
                    Column("kernel_distance"), Column("param_distance"), Column("min_norm_distance"),
                    Column("distance_ratio"))


def _trajectory(every) -> Trajectory | None:
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise OptimizerError(f"trajectory_every must be a non-negative integer, got {every!r}")
    return Trajectory(every) if every else None


#: What a GD or NGD run may record besides its numbers: observers of its loop (volumelab.optimizers.observers).
_OBSERVERS = (
    ObserverOption("keep_outputs", bool, False, lambda keep: FinalOutputs() if keep else None,
                   "each run's final layers and outputs (and W), as arrays"),
    ObserverOption("trajectory_every", int, 0, _trajectory,
                   "every this many steps, each run's outputs along the run, as arrays (0: none)"),
    ObserverOption("ntk_metrics", bool, False, lambda on: NTKLaziness() if on else None,
                   "each run's NTK at its start and its laziness (NTKLaziness)"),
    ObserverOption("limit_directions", bool, False, lambda on: LimitDirections() if on else None,
                   "each linear predictor's cosines with its training set's l2 and l1 max-margin directions and "
                   "min-norm interpolant (LimitDirections)"),
    ObserverOption("kernel_metrics", bool, False, lambda on: KernelRegression() if on else None,
                   "each run's end against the kernel predictor of the NTK at its start (KernelRegression)"),
)


def _trainer_mismatch(model, settings) -> str | None:
    """Why the trainer cannot start on ``model`` (its balanced initialization is not defined there), or ``None``."""
    return settings.optimizer(progress=False).model_mismatch(model)


_BATCHED = MethodRunner(_run_batch, batched=True,
                        single_threaded=lambda settings: resolve_device(settings.device).type == "cpu",
                        mismatch=_trainer_mismatch)


GD = register_method(MethodSpec(
    type="gd",
    optimizer=GradientDescent,
    budget="steps",
    budget_minimum=0,
    budget_unit="GD steps",
    # All seeds of a point in one batch; GradientDescent.run_batch computes a batch on one
    # thread with one intra-op thread on the CPU.
    runner=_BATCHED,
    # log_every only changes the history, which the store does not keep.
    execution_fields=frozenset({"device", "log_every"}),
    # Fields that joined its key after rows were stored: volumelab.experiments.keys.KEY_MIGRATIONS.
    observers=_OBSERVERS,
    role=TRAINER,
    label="GD",
    style={"color": "#d62728", "marker": "s", "linestyle": "-"},
    columns=(Column("steps", dtype="count"), Column("lr", source="setting"), Column("init_scale", source="setting"),
             Column("momentum", source="setting"), *_TRAINED_METRICS),
    no_loss="diverged",
))


# ------------------------------------------------------------------ natural gradient descent
NGD = register_method(MethodSpec(
    type="ngd",
    optimizer=NaturalGradientDescent,
    budget="steps",
    budget_minimum=0,
    budget_unit="NGD steps",
    # The same batched runner as GD: run_batch is inherited.
    runner=_BATCHED,
    execution_fields=frozenset({"device", "log_every"}),
    observers=_OBSERVERS,
    # Not read by the paper figures' verdict rules (those compare G&C with GD); NGD's
    # studies state their own.
    role="other",
    label="NGD",
    style={"color": "#2ca02c", "marker": "^", "linestyle": "-"},
    columns=(Column("steps", dtype="count"), Column("lr", source="setting"), Column("init_scale", source="setting"),
             Column("momentum", source="setting"), Column("damping", source="setting"), *_TRAINED_METRICS),
    no_loss="diverged or its solve failed",
))


# ------------------------------------------------------------------ the NTK at initialization


NTK = register_method(MethodSpec(
    type="ntk",
    optimizer=NTKAtInit,
    procedure="measurement",
    budget="draws",
    budget_unit="NTK Grams",
    runner=MethodRunner(_run_each_seed, batched=False),
    # The Gram's two implementations and its memory budget give the same numbers.
    execution_fields=frozenset({"device", "ntk_method", "memory_bytes"}),
    role="other",
    label="NTK at init",
    style={"color": "#9467bd", "marker": "D", "linestyle": "-"},
    columns=(Column("num_train", dtype="count"), Column("draws", dtype="count"), Column("lambda_min"),
             Column("lambda_max"), Column("lambda_min_std"), Column("lambda_max_std"), Column("lambda_min_limit"),
             Column("lambda_max_limit"), Column("condition")),
    no_loss="gave a non-finite NTK",
))


# ------------------------------------------------------------------ the theorems' mechanisms on prior draws

PRIOR_LAW_STATISTICS = ENTRY_KEYS + LOSS_KEYS

PRIOR_LAW = register_method(MethodSpec(
    type="prior_law",
    optimizer=PriorLaw,
    procedure="measurement",
    budget="draws",
    budget_unit="prior draws",
    runner=MethodRunner(_run_each_seed, batched=False),
    # Every exact sampler draws the same law; the statistics are computed on the CPU.
    execution_fields=frozenset({"device", "sampler"}),
    role="other",
    label="prior law",
    style={"color": "#8c564b", "marker": "v", "linestyle": "-"},
    columns=(Column("draws", dtype="count"), Column("entry_variance"), Column("excess_kurtosis"),
             Column("row_correlation"), Column("col_correlation"), Column("row_square_correlation"),
             Column("col_square_correlation"), Column("mardia_excess"), Column("mardia_z"),
             Column("loss_correlation"), Column("loss_rank_correlation"), Column("loss_mutual_information"),
             Column("prior_gen_loss"), Column("prior_train_loss"), Column("row_correlation_closed_form"),
             *(Column(f"{key}_stderr") for key in PRIOR_LAW_STATISTICS)),
    no_loss="gave a non-finite draw",
))


COLLAPSE = register_method(MethodSpec(
    type="collapse",
    optimizer=ProductCollapse,
    procedure="measurement",
    budget="draws",
    budget_unit="prior draws",
    runner=MethodRunner(_run_each_seed, batched=False),
    execution_fields=frozenset({"device", "sampler"}),
    role="other",
    label="collapse",
    style={"color": "#17becf", "marker": "P", "linestyle": "-"},
    columns=(Column("draws", dtype="count"), Column("sigma2_over_sigma1"), Column("top_share"),
             Column("top2_share"), Column("rank_one_distance"), Column("effective_rank"),
             Column("log_sigma1_over_sigma2_per_layer"), Column("lambda1"), Column("lambda2"), Column("gap"),
             Column("lambda1_closed_form"), Column("gap_closed_form"), Column("zero_draws", dtype="count"),
             *(Column(f"{key}_stderr") for key in ("sigma2_over_sigma1", "top_share", "top2_share",
                                                   "rank_one_distance", "effective_rank",
                                                   "log_sigma1_over_sigma2_per_layer", "gap"))),
    no_loss="gave a non-finite draw",
))
