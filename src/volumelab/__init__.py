"""volumelab: do networks need gradient descent to generalize? Measure it.

Core objects:

>>> import volumelab as vl
>>> problem = vl.make_sensing(rows=5, cols=5, rank=1, num_measurements=15, seed=0)
>>> model = vl.FactorizationModel(rows=5, cols=5, width=40, depth=2)
>>> result = vl.GuessCheck(eps=0.02).run(problem, model, budget=100_000, seed=0)
>>> result.metrics["prior_gen_loss"] > 0
True
"""

from importlib.metadata import PackageNotFoundError, version

from ._results_version import RESULTS_VERSION
from .errors import ModelError, OptimizerError, ProblemError, VolumelabError
from .models import CPModel, FactorizationModel, MLPModel
from .optimizers import GradientDescent, GuessCheck, NaturalGradientDescent, RunResult
from .problems import (
    Problem,
    SupervisedProblem,
    load_problem,
    make_completion,
    make_problem,
    make_sensing,
    make_supervised,
    make_tensor_problem,
    save_problem,
)



def load_results(directory, *, all_versions: bool = False):
    """All runs stored under ``directory`` (a sweep's ``--out`` folder, or a parent of several) as the results
    table, a pandas DataFrame: one row per run, one typed column per fact, as ``results.csv``.

    See :func:`volumelab.experiments.load_results` (its columns: docs/experiments.md, "The results table");
    pandas is imported only when called.
    """
    from .experiments.results import load_results as _load

    return _load(directory, all_versions=all_versions)


def load_arrays(directory, run_key=None):
    """Arrays kept by runs (G&C's ``keep_samples``, GD's ``keep_outputs``) in a sweep's results store.

    See :func:`volumelab.experiments.load_arrays`.
    """
    from .experiments.results import load_arrays as _load

    return _load(directory, run_key)


try:
    __version__ = version("volumelab")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "RESULTS_VERSION",
    "CPModel",
    "FactorizationModel",
    "GradientDescent",
    "MLPModel",
    "NaturalGradientDescent",
    "GuessCheck",
    "ModelError",
    "OptimizerError",
    "Problem",
    "ProblemError",
    "RunResult",
    "VolumelabError",
    "__version__",
    "load_arrays",
    "load_problem",
    "load_results",
    "make_completion",
    "make_problem",
    "make_sensing",
    "make_supervised",
    "make_tensor_problem",
    "save_problem",
    "SupervisedProblem",
]
