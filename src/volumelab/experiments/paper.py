"""The paper's figures (arXiv 2506.03931, Figs. 1-11) as packaged sweep configs."""

from __future__ import annotations

import re
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
    """``"all"`` -> every figure; ``"figure2"``, ``"fig2"``, ``"2"`` -> ``["figure2"]``."""
    if name.strip().lower() == "all":
        return list(FIGURES)
    match = re.fullmatch(r"(?:fig(?:ure)?)?\s*(\d+)", name.strip().lower())
    if not match or f"figure{int(match.group(1))}" not in FIGURES:
        raise ConfigError(f"unknown figure {name!r}; expected figure1 ... figure11 or 'all'")
    return [f"figure{int(match.group(1))}"]
