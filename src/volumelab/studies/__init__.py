"""Studies: analyses that compare named methods, judged from a sweep's stored runs.

Unlike the generic report (which reads methods through their registrations only), a
study is about particular methods by definition: :mod:`volumelab.studies.ngd` judges the
natural-gradient studies (arXiv 2111.11542) from the runs of the methods its configs
name. The report calls :func:`judge_study` for a sweep whose ``claim`` is a study's.
"""

from .ngd import STUDY_CLAIMS, judge_study, study_rule, trajectory_distances

__all__ = ["STUDY_CLAIMS", "judge_study", "study_rule", "trajectory_distances"]
