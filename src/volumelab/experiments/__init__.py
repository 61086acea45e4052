"""Declarative sweeps: config schema, method registry, generic driver, executors and the results store.

>>> from volumelab.experiments import load_sweep, run_sweep   # doctest: +SKIP
>>> outcome = run_sweep(load_sweep("configs/figure1.yaml"), scale="quick", out_dir="runs/fig1")

A method plugs in with one :func:`register_method` call (see :mod:`volumelab.experiments.methods`);
problem and model kinds with :func:`register_problem_kind` / :func:`register_model_kind`.
"""

from .config import (
    ConfigError,
    FactorizationConfig,
    FileProblemConfig,
    GeneratedProblemConfig,
    MethodSettings,
    ModelConfig,
    ProblemConfig,
    ResolvedPoint,
    SweepConfig,
    load_sweep,
    resolve_points,
    sweep_from_dict,
)
from .driver import SweepOutcome, SweepPlan, SweepTask, execute_task, plan_sweep, run_sweep
from .executors import EXECUTORS, make_executor
from ._schema import Count, Strict
from .kinds import ModelKind, ProblemKind, register_model_kind, register_problem_kind
from .methods import (
    Column,
    CountColumn,
    ExtraRows,
    MethodRunner,
    MethodSpec,
    get_method,
    method_types,
    register_method,
    unregister_method,
)
from .paper import FIGURES, figure_config_path, resolve_figure_names
from .results import export_results, load_arrays, load_frame, load_results, rows_to_frame, tidy_frame
from .store import ResultsStore

from . import registry  # noqa: E402,F401  (registers the built-in methods; the package loads before any module of it)
from .registry import estimator_method  # noqa: E402

__all__ = [
    "estimator_method",
    "Count",
    "Strict",
    "load_arrays",
    "EXECUTORS",
    "FIGURES",
    "Column",
    "ConfigError",
    "CountColumn",
    "ExtraRows",
    "FactorizationConfig",
    "FileProblemConfig",
    "GeneratedProblemConfig",
    "MethodRunner",
    "MethodSettings",
    "MethodSpec",
    "ModelConfig",
    "ModelKind",
    "ProblemConfig",
    "ProblemKind",
    "ResolvedPoint",
    "ResultsStore",
    "SweepConfig",
    "SweepOutcome",
    "SweepPlan",
    "SweepTask",
    "execute_task",
    "export_results",
    "figure_config_path",
    "get_method",
    "load_frame",
    "load_results",
    "load_sweep",
    "make_executor",
    "method_types",
    "plan_sweep",
    "register_method",
    "register_model_kind",
    "register_problem_kind",
    "resolve_figure_names",
    "resolve_points",
    "rows_to_frame",
    "run_sweep",
    "sweep_from_dict",
    "tidy_frame",
    "unregister_method",
]
