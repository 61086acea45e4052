"""Declarative sweeps: config schema, generic driver, executors and the results store.

>>> from volumelab.experiments import load_sweep, run_sweep   # doctest: +SKIP
>>> outcome = run_sweep(load_sweep("configs/figure1.yaml"), scale="quick", out_dir="runs/fig1")
"""

from .config import (
    ConfigError,
    GdMethodConfig,
    GncMethodConfig,
    ModelConfig,
    ProblemConfig,
    ResolvedPoint,
    SweepConfig,
    load_sweep,
    register_method_config,
    resolve_points,
    sweep_from_dict,
)
from .driver import SweepOutcome, SweepPlan, SweepTask, execute_task, plan_sweep, run_sweep
from .executors import EXECUTORS, make_executor
from .methods import MethodRunner, register_method
from .paper import FIGURES, figure_config_path, resolve_figure_names
from .results import load_results, rows_to_frame
from .store import ResultsStore

__all__ = [
    "EXECUTORS",
    "FIGURES",
    "ConfigError",
    "GdMethodConfig",
    "GncMethodConfig",
    "MethodRunner",
    "ModelConfig",
    "ProblemConfig",
    "ResolvedPoint",
    "ResultsStore",
    "SweepConfig",
    "SweepOutcome",
    "SweepPlan",
    "SweepTask",
    "execute_task",
    "figure_config_path",
    "load_results",
    "load_sweep",
    "make_executor",
    "plan_sweep",
    "register_method",
    "register_method_config",
    "resolve_figure_names",
    "resolve_points",
    "rows_to_frame",
    "run_sweep",
    "sweep_from_dict",
]
