"""Studies: analyses that compare named methods, judged from a sweep's stored runs.

Unlike the generic report (which reads methods through their registrations only), a
study is about particular methods by definition: :mod:`volumelab.studies.ngd` judges the
natural-gradient studies (arXiv 2111.11542) and :mod:`volumelab.studies.mlp` the wide-MLP
studies (arXiv 2205.13507) and the volume hypothesis on real data, and
:mod:`volumelab.studies.theory` the mechanisms behind the G&C paper's theorems and its open
questions, :mod:`volumelab.studies.tensor` its first open question (tensor factorization), from the runs of the methods their configs name. The report calls :func:`judge_study` for a sweep whose
``claim`` is a study's.
"""

from __future__ import annotations

from pathlib import Path

from . import figures, mlp, ngd, tensor, theory
from .ngd import trajectory_distances

__all__ = ["STUDY_CLAIMS", "judge_study", "study_rule", "trajectory_distances"]

# Modules not yet declared on :mod:`volumelab.evidence` still judge through their own ``judge_study``.
_MODULES = {claim: module for module in (ngd, mlp, theory, tensor) for claim in getattr(module, "STUDY_CLAIMS", ())}
#: Every study's claim (a sweep config's ``claim``).
STUDY_CLAIMS = tuple(_MODULES)


def _module(claim: str):
    try:
        return _MODULES[claim]
    except KeyError:
        raise ValueError(f"unknown study {claim!r}; expected one of {', '.join(STUDY_CLAIMS)}") from None


def study_rule(claim: str) -> str:
    """The rule of a study's verdict, in words (printed in its report)."""
    return _module(claim).study_rule(claim)


def judge_study(claim: str, frame, out_dir: Path, coords: list[str], *, stem: Path | None = None, title: str = ""):
    """The verdict of a study sweep and its extra plot: see :func:`volumelab.studies.ngd.judge_study`."""
    return _module(claim).judge_study(claim, frame, out_dir, coords, stem=stem, title=title)
