"""The packaged sweep configs: the figures of arXiv 2506.03931 (Figs. 1-11), the
natural-gradient studies (arXiv 2111.11542), the wide-MLP studies (arXiv 2205.13507,
and the volume hypothesis on real data), a depth and a width sweep at eps far below the
paper's, (under ``configs/theory/``) the mechanisms behind arXiv 2506.03931's two
theorems and its open questions, and (under ``configs/tensor/``) its first open question, tensor
factorization."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .config import ConfigError

__all__ = ["FIGURES", "PACKAGED", "STUDIES", "figure_config_path", "resolve_figure_names"]

FIGURES = tuple(f"figure{i}" for i in range(1, 12))
#: Studies beyond those figures, one packaged config each.
STUDIES = ("ngd-invariance", "ngd-invariance-width", "ngd-completion", "ngd-sparse", "ngd-sparse-depth", "ngd-mlp",
           "mlp-ntk", "mlp-convergence", "mlp-lazy", "mlp-lr-transfer", "mlp-lr-transfer-sgd",
           "mlp-lr-transfer-adam", "mlp-volume", "mlp-volume-train",
           "mlp-implicit-reg", "mlp-moments", "mlp-width-needed", "volume-scale",
           "depth-rare", "width-rare", "theory-width", "theory-width-mean", "theory-depth", "theory-relu-width", "theory-rank-depth",
           "tensor-width", "tensor-depth")
PACKAGED = FIGURES + STUDIES
#: Studies whose configs live under ``configs/theory/``: the mechanisms of the theorems and the open questions.
THEORY_PREFIX = "theory-"
#: Studies whose configs live under ``configs/tensor/``: the first open question, tensor factorization.
TENSOR_PREFIX = "tensor-"


def _config_dir() -> Path:
    return Path(str(resources.files("volumelab") / "configs"))


def figure_config_path(name: str) -> Path:
    """The packaged YAML of ``figureN`` or a study."""
    folder = _config_dir()
    for prefix, subfolder in ((THEORY_PREFIX, "theory"), (TENSOR_PREFIX, "tensor")):
        if name.startswith(prefix):
            folder = folder / subfolder
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no packaged config for {name!r} (looked for {path})")
    return path


def resolve_figure_names(name: str) -> list[str]:
    """``"all"`` -> every figure and study; ``"figure2"`` -> ``["figure2"]``. Only these documented names are accepted."""
    if name == "all":
        return list(PACKAGED)
    if name not in PACKAGED:
        raise ConfigError(f"unknown figure or study {name!r}; expected one of figure1 ... figure11, "
                          f"{', '.join(STUDIES)}, or all")
    return [name]
