"""Studies: every claim volumelab judges, each one declaration on :mod:`volumelab.evidence`.

Importing this package registers them (:func:`volumelab.evidence.register_study`); a sweep whose
``claim`` names one is judged by it in its report:

* :mod:`~volumelab.studies.figures`: the G&C paper's width and depth claims (arXiv 2506.03931),
  judged on figures 1-11 and the rare-event sweeps;
* :mod:`~volumelab.studies.theory`: the mechanisms behind its two theorems and its open questions
  (ReLU, rank > 1); :mod:`~volumelab.studies.tensor`: its first open question (tensors);
* :mod:`~volumelab.studies.ngd`: natural gradient descent (arXiv 2111.11542), and
  its invariance on nonlinear MLPs (``ngd-mlp``) in the same module;
* :mod:`~volumelab.studies.mlp`: wide deep MLPs (arXiv 2205.13507) and the volume hypothesis on
  real data; :mod:`~volumelab.studies.mlp_implicit`: GD's implicit regularization there (the trained
  network against the kernel predictor of its NTK at initialization); :mod:`~volumelab.studies.mlp_moments`:
  the dependence of its generalization on the inputs' higher moments; :mod:`~volumelab.studies.mlp_width`: the
  width its NTK regime needs against the number of training points; :mod:`~volumelab.studies.mlp_transfer`:
  learning-rate transfer as Tensor Programs V measures it (SGD and Adam, fitted optima, the coordinate check);
  :mod:`~volumelab.studies.volume_scale`: G&C by subset simulation against GD and SGD as the training set grows
  (Chiang et al.'s parity at small n, Pakman et al.'s shrinking advantage, Peleg & Hein's depth).

The rule history (``rule_history.json``) dates each study's current rule.
"""

from __future__ import annotations

from . import figures, mlp, mlp_implicit, mlp_moments, mlp_transfer, mlp_width, ngd, tensor, theory, volume_scale
from .ngd import trajectory_distances

__all__ = ["figures", "mlp", "mlp_implicit", "mlp_moments", "mlp_transfer", "mlp_width", "ngd", "tensor", "theory",
           "trajectory_distances", "volume_scale"]
