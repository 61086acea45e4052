"""The paper's figures (arXiv 2506.03931, Figs. 1-11) as packaged sweep configs."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .config import ConfigError

__all__ = ["FIGURES", "figure_config_path", "resolve_figure_names"]

FIGURES = tuple(f"figure{i}" for i in range(1, 12))


def _config_dir() -> Path:
    return Path(str(resources.files("volumelab") / "configs"))


def figure_config_path(name: str) -> Path:
    """The packaged YAML of ``figureN``."""
    path = _config_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no packaged config for {name!r} (looked for {path})")
    return path


def resolve_figure_names(name: str) -> list[str]:
    """``"all"`` -> every figure; ``"figure2"`` -> ``["figure2"]``. Only these documented names are accepted."""
    if name == "all":
        return list(FIGURES)
    if name not in FIGURES:
        raise ConfigError(f"unknown figure {name!r}; expected one of figure1 ... figure11, or all")
    return [name]
