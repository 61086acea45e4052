"""Figures in the paper's style and the reproduction report (headless matplotlib)."""

from .figures import plot_sweep, summarize

__all__ = ["plot_sweep", "summarize"]
