"""Supervised tasks: inputs and targets, scored with the squared or the logistic loss.

A :class:`SupervisedProblem` holds a training set and a test set. A model's outputs on
the stacked inputs ``[X_train; X_test]`` (shape ``(..., n_train + n_test)``, any leading
sample axes) are turned into losses in one place, :meth:`SupervisedProblem.losses`:

* ``squared``: ``L = mean_i (f(x_i) - y_i)^2``;
* ``logistic`` (labels ``y_i in {-1, +1}``): ``L = mean_i log(1 + exp(-y_i f(x_i)))``,
  and the test error ``mean_i [y_i f(x_i) <= 0]`` (a zero output counts as an error).

The generalization loss ``gen_loss`` is the test loss. Data sets:

* ``teacher``: inputs ``x`` and a random teacher network
  ``g(x) = a^T tanh(B x / sqrt(d)) / sqrt(h)`` (``B``, ``a`` standard Gaussian, ``h`` hidden
  units); regression targets ``g(x) + noise * N(0, 1)``, classification labels
  ``sign(g(x) + noise * N(0, 1))``: the teacher evaluated on the inputs themselves. The inputs
  (``inputs``, :data:`INPUT_DISTRIBUTIONS`) all have mean 0 and covariance ``I_d`` and differ in their
  higher moments: ``gaussian`` (the default) ``x ~ N(0, I_d)``; ``sphere``, uniform on the sphere of
  radius ``sqrt(d)`` (light tails: every moment finite); ``student_t``, the multivariate Student-t
  with ``nu > 2`` degrees of freedom scaled to covariance ``I_d``,
  ``x = sqrt((nu - 2) / nu) z / sqrt(g / nu)`` with ``z ~ N(0, I_d)`` and one ``g ~ chi2(nu)`` per
  point (a moment of order ``k`` exists iff ``k < nu``; :mod:`volumelab.problems.input_moments`).
  The three share the Gaussian draw ``z`` (the sphere's point is ``sqrt(d) z / ||z||``), the
  teacher ``(B, a)``, the noise and the split: only each point's radius differs. The sphere's and the
  Student-t's inputs are not standardized (that would take the sphere's points off the sphere, and
  rescale a Student-t with ``nu <= 4``, whose sample variance has no variance, by a noisy factor), so
  their covariance is exactly ``I_d``; the Gaussian's are, as before.
* ``sparse_teacher``, ``linear_teacher``: linearly separable binary classification,
  Gaussian inputs ``x ~ N(0, I_d)`` and labels ``sign(<x, w*> + noise * N(0, 1))`` with a
  unit-norm ``w*`` that has ``teacher_nonzero`` entries of equal size (sparse) or
  Gaussian entries (dense); 10,000 test points by default; inputs are not
  re-standardized (that would move them off the hyperplane through the origin).
* ``digits``, ``breast_cancer``, ``diabetes``: the data sets that ship inside
  scikit-learn (no download). ``digits`` keeps two classes (default 3 and 8: similar
  shapes, so the task is not trivial), labelled ``-1``/``+1``; ``breast_cancer`` is
  binary; ``diabetes`` is a regression (for the logistic loss its target is split at the
  training median).
* ``mnist1d``: MNIST-1D (Greydanus & Kobak, arXiv 2011.14439), generated here by the
  ``mnist1d`` package's own generator (``mnist1d.data.make_dataset``, never its download)
  with the fixed arguments :data:`MNIST1D_ARGS`: the package's defaults but 10,000 samples
  (its default 5,000 leaves a pair of classes only 1,000 points), so exactly 1,000 signals
  of 40 samples per digit. The package's own 80/20 train/test cut is not used: its two
  parts are one pool of 10,000, split by the seed like every finite set. It keeps two
  classes (default 0 and 1; a pair has 2,000 points, 1,000 of each). The generator seeds
  NumPy's and Python's global generators; their states are restored afterwards, and the
  arrays are made once per process (:func:`mnist1d_arrays`). Needs the optional extra:
  ``pip install 'volumelab[mnist1d]'``.

A data set with digit classes (:data:`CLASS_DATASETS`: ``digits``, ``mnist1d``) keeps the
pair ``classes = (A, B)``: class ``A`` is labelled ``-1`` and class ``B`` ``+1``.

Splits come from the ``(seed, "data")`` stream: a random permutation, the first
``num_train`` points train and the rest (at most ``num_test``) test. Inputs are
standardized with the training set's mean and standard deviation (constant features
are left centred, not divided by zero); regression targets likewise. A split draws
uniformly: the class counts of its training points are hypergeometric, not forced equal.

Unlabeled inputs (:meth:`SupervisedProblem.unlabeled_inputs`: what a population Fisher
averages over, arXiv 2111.11542) come from the distribution of the training inputs,
in the problem's coordinates: for the generated sets a fresh Gaussian draw
(:class:`GaussianInputs`, the teacher's standardization applied), or for a teacher on the
sphere or Student-t inputs a fresh draw of those (:class:`RadialInputs`); for the finite sets
(scikit-learn's and MNIST-1D) the points of the kept classes used neither to train nor to
test (:class:`InputPool`: there are some only when ``num_test`` leaves some out).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import random
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._rng import make_generator
from ..errors import ProblemError

__all__ = ["CLASS_DATASETS", "DATASETS", "GaussianInputs", "INPUT_DISTRIBUTIONS", "InputPool", "LOSSES", "MNIST1D_ARGS",
           "RadialInputs", "SupervisedProblem", "SupervisedTensors", "checked_classes", "checked_inputs",
           "make_supervised", "mnist1d_arrays"]

LOSSES = ("squared", "logistic")
DATASETS = ("teacher", "digits", "breast_cancer", "diabetes", "sparse_teacher", "linear_teacher", "mnist1d")
#: The teacher's input distributions: mean 0 and covariance I_d each, different higher moments.
INPUT_DISTRIBUTIONS = ("gaussian", "sphere", "student_t")
#: Linearly separable teachers (labels sign(<x, w*>)): classification, 10,000 test points by default.
LINEAR_TEACHERS = ("sparse_teacher", "linear_teacher")
#: The finite data sets: bundled with scikit-learn, or generated once (MNIST-1D).
_BUNDLED = ("digits", "breast_cancer", "diabetes", "mnist1d")
#: The data sets with digit classes 0-9, and the pair each keeps by default (``(A, B)``: A is -1, B is +1).
CLASS_DATASETS = {"digits": (3, 8), "mnist1d": (0, 1)}
_NUM_CLASSES = 10
#: The fixed arguments of ``mnist1d.data.make_dataset``: the package's defaults (mnist1d 0.0.2) but
#: ``num_samples`` (10,000, not 5,000: 1,000 per digit). ``train_split`` only sets where the package cuts
#: its own train/test parts, which are joined again here; its ``url`` (a download) is never used.
MNIST1D_ARGS = types.MappingProxyType({
    "num_samples": 10_000, "train_split": 0.8, "template_len": 12, "padding": (36, 60), "scale_coeff": 0.4,
    "max_translation": 48, "corr_noise_scale": 0.25, "iid_noise_scale": 2e-2, "shear_scale": 0.75,
    "shuffle_seq": False, "final_seq_length": 40, "seed": 42})
#: What to install when the ``mnist1d`` package is missing.
MNIST1D_EXTRA = "pip install 'volumelab[mnist1d]'"


def _float64(name: str, value, ndim: int) -> torch.Tensor:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ProblemError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    tensor = torch.as_tensor(array.astype(np.float64))
    if tensor.ndim != ndim:
        raise ProblemError(f"{name} must have {ndim} dimension(s), got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ProblemError(f"{name} contains NaN or infinite values")
    return tensor.contiguous()


@dataclass(frozen=True)
class SupervisedTensors:
    """The supervised task's losses on one device: every loss of a supervised problem comes from here.

    A model's outputs on ``inputs`` (``[X_train; X_test]``), shape ``(..., n + t)`` for any
    leading sample axes, become the losses in :meth:`losses` and the error rates in
    :meth:`extra_metrics` (logistic loss only).

    Attributes:
        inputs: ``(n + t, d)``, or ``(S, n + t, d)`` stacked (one data set per run).
        targets: ``(n + t,)``, or ``(S, n + t)`` stacked.
        num_train: ``n``.
        loss: ``"squared"`` or ``"logistic"``.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    num_train: int
    loss: str = "squared"

    @classmethod
    def stack(cls, tensors: Sequence["SupervisedTensors"]) -> "SupervisedTensors":
        """One data set per run, for problems of one shape and loss (the runs of a GD batch)."""
        if len({(t.num_train, tuple(t.inputs.shape), t.loss) for t in tensors}) != 1:
            raise ProblemError("stacked supervised problems must have the same sizes and loss")
        return cls(torch.stack([t.inputs for t in tensors]), torch.stack([t.targets for t in tensors]),
                   tensors[0].num_train, tensors[0].loss)

    def to(self, dtype: torch.dtype) -> "SupervisedTensors":
        """The same tensors in ``dtype`` (a subclass keeps its class and fields)."""
        return dataclasses.replace(self, inputs=self.inputs.to(dtype), targets=self.targets.to(dtype))

    @property
    def stacked(self) -> bool:
        return self.inputs.ndim == 3

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Metrics besides the two losses: the error rates of a classification task."""
        return ("train_error", "test_error") if self.loss == "logistic" else ()

    def run(self, index: int) -> "SupervisedTensors":
        """Run ``index``'s tensors of a stacked batch (the tensors themselves when not stacked)."""
        if not self.stacked:
            return self
        return dataclasses.replace(self, inputs=self.inputs[index], targets=self.targets[index])

    def training_view(self) -> "SupervisedTensors":
        """These tensors cut to the training points (one run's): a model's outputs on it are
        exactly what the training loss sees, without the test points' forward pass."""
        n = self.num_train
        return dataclasses.replace(self, inputs=self.inputs[..., :n, :], targets=self.targets[..., :n])

    def minibatch(self, indices: torch.Tensor) -> "SupervisedTensors":
        """Each run's minibatch of the training points, as a training view: ``indices (S, b)`` (into
        ``0 .. n-1``) give inputs ``(S, b, d)`` and targets ``(S, b)``, all ``b`` of them training points."""
        if indices.ndim != 2:
            raise ProblemError(f"minibatch indices must be (runs, points), got shape {tuple(indices.shape)}")
        if self.stacked:
            runs = torch.arange(indices.shape[0], device=indices.device).unsqueeze(1)
            inputs, targets = self.inputs[runs, indices], self.targets[runs, indices]
        else:
            inputs, targets = self.inputs[indices], self.targets[indices]
        return dataclasses.replace(self, inputs=inputs, targets=targets, num_train=int(indices.shape[1]))

    def on_inputs(self, inputs: torch.Tensor) -> "SupervisedTensors":
        """The same task on other inputs ``(..., N, d)``, without targets (NaN), all of them "training" points:
        what a model's outputs at chosen inputs are computed from (one input at a time for per-point
        Jacobians, an unlabeled pool for a Fisher)."""
        return dataclasses.replace(self, inputs=inputs, targets=torch.full_like(inputs[..., 0], torch.nan),
                                   num_train=int(inputs.shape[-2]))

    def train_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """The ``n`` values the training loss sees: the outputs on ``X_train``."""
        return outputs[..., : self.num_train]

    def loss_derivatives(self, train_outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First and second derivatives of ``L_train`` in each training output ``z_i = f(x_i)``.

        Squared: ``(2/n)(z - y)`` and ``2/n``. Logistic: ``-y sigmoid(-y z) / n`` and
        ``sigmoid(z) sigmoid(-z) / n`` (the Fisher of the Bernoulli likelihood).
        """
        n = self.num_train
        targets = self.targets[..., :n]
        if self.loss == "squared":
            residual = train_outputs - targets
            return residual * (2.0 / n), torch.full_like(residual, 2.0 / n)
        return (-targets * torch.sigmoid(-targets * train_outputs) / n,
                torch.sigmoid(train_outputs) * torch.sigmoid(-train_outputs) / n)

    def curvature(self, outputs: torch.Tensor) -> torch.Tensor:
        """The second derivative of one point's loss in its output, not averaged over points, ``(...)``.

        ``2`` for the squared loss; ``sigmoid(z) sigmoid(-z)`` for the logistic one, the Fisher
        of the model's own Bernoulli at that input. No target enters, so it is defined at
        unlabeled inputs too (:meth:`loss_derivatives`' second derivative is this over ``n``).
        """
        if self.loss == "squared":
            return torch.full_like(outputs, 2.0)
        return torch.sigmoid(outputs) * torch.sigmoid(-outputs)

    def linear_predictor_metrics(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a linear predictor ``w`` ``(..., d)`` shows beyond its losses, each ``(...)``.

        ``sparsity``: ``||w||_1^2 / ||w||_2^2`` (between 1 for one non-zero entry and ``d``
        for equal entries; NaN for ``w = 0``). For the logistic loss also the normalized
        training margins ``margin_l2 = min_i y_i <w, x_i> / ||w||_2`` and
        ``margin_l1 = min_i y_i <w, x_i> / ||w||_1`` (negative when a training point is
        misclassified). (The cosines of ``w`` with its training set's limit directions are the
        observer :class:`volumelab.diagnostics.max_margin.LimitDirections`.)
        """
        l1, l2 = w.abs().sum(-1), w.norm(dim=-1)
        metrics = {"sparsity": l1.square() / l2.square()}
        if self.loss == "logistic":
            n = self.num_train
            scores = torch.matmul(self.inputs[..., :n, :], w.unsqueeze(-1)).squeeze(-1)
            smallest = (self.targets[..., :n] * scores).min(-1).values
            metrics["margin_l2"] = smallest / l2
            metrics["margin_l1"] = smallest / l1
        return metrics

    def _pointwise(self, outputs: torch.Tensor) -> torch.Tensor:
        if self.loss == "squared":
            return (outputs - self.targets).square()
        # log(1 + exp(-y f)), stable for any margin.
        return torch.nn.functional.softplus(-self.targets * outputs)

    def losses(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(train_loss, gen_loss)`` (the test loss), each ``(...)``, of outputs ``(..., n + t)``."""
        pointwise = self._pointwise(outputs)
        return pointwise[..., : self.num_train].mean(-1), pointwise[..., self.num_train :].mean(-1)

    def extra_metrics(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``train_error`` and ``test_error`` (``mean [y f(x) <= 0]``) for the logistic loss; else none."""
        if self.loss != "logistic":
            return {}
        wrong = (self.targets * outputs <= 0).to(outputs.dtype)
        return {"train_error": wrong[..., : self.num_train].mean(-1),
                "test_error": wrong[..., self.num_train :].mean(-1)}

    def normalized_train_loss(self, outputs: torch.Tensor, layers) -> torch.Tensor:
        """Chiang et al.'s (ICLR 2023) weight-normalized training loss, ``(...)``: the mean logistic loss of the
        outputs divided by the product of the layers' Frobenius norms (``layers`` each ``(..., out, in)``, as the
        model holds them). A bias-free ReLU MLP's outputs are 1-homogeneous in each layer, so this loss does not
        change when a layer is scaled, where the plain loss can be made as small as one likes; it puts networks
        that fit the training set on one scale (logistic loss only)."""
        if self.loss != "logistic":
            raise ProblemError("the normalized training loss needs the logistic loss (a classification task)")
        scale = torch.ones_like(outputs[..., 0])
        for layer in layers:
            scale = scale * layer.flatten(-2).norm(dim=-1).to(outputs.dtype)
        return self._pointwise(outputs / scale[..., None])[..., : self.num_train].mean(-1)

    def error_scores(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``train_error_score`` and ``test_error_score``: each split's error count with its ties broken by the
        margins, ``(k + V / (V + S)) / m``, each ``(...)`` (logistic loss only).

        ``m`` points, ``k`` of them errors (``y f(x) <= 0``, as :meth:`extra_metrics` counts them), ``V`` the
        sum of ``|y f(x)|`` over the errors and ``S`` over all points (``V / (V + S) = 0`` when both are 0). The
        tie-break ``V / (V + S)`` lies in ``[0, 1/2]`` (``V <= S``) and is 0 exactly when ``V = 0``, so for an
        integer ``K`` the score is below ``(K + 1) / m`` exactly when ``k <= K``: the sets "at most ``K``
        errors" are sets of the score, and between them the score orders a count's draws by how far their
        errors are from being right, relative to the margins' scale (so it does not change when the outputs are
        scaled). A ladder of thresholds on it is well defined at every level, where the count alone has
        ``m + 1`` values and ties.
        """
        if self.loss != "logistic":
            raise ProblemError("error scores need the logistic loss (a classification task)")
        margins = self.targets * outputs
        scores = {}
        for name, part in (("train_error_score", margins[..., : self.num_train]),
                           ("test_error_score", margins[..., self.num_train :])):
            wrong = part <= 0
            violation = torch.where(wrong, -part, torch.zeros_like(part)).sum(-1)
            total = part.abs().sum(-1)
            ratio = torch.where(violation > 0, violation / (violation + total).clamp_min(torch.finfo(part.dtype).tiny),
                                torch.zeros_like(violation))
            scores[name] = (wrong.sum(-1).to(part.dtype) + ratio) / part.shape[-1]
        return scores


@dataclass(frozen=True, eq=False)
class GaussianInputs:
    """Unlabeled inputs drawn afresh: ``x = mean + scale * z``, ``z ~ N(0, I_d)`` entrywise.

    The distribution a generated problem's inputs come from, in its own coordinates (a
    standardized teacher's ``mean = -mu / sigma`` and ``scale = 1 / sigma``, with ``mu`` and
    ``sigma`` the training inputs' mean and standard deviation).

    Attributes:
        mean: ``(d,)``.
        scale: ``(d,)``.
    """

    mean: torch.Tensor
    scale: torch.Tensor

    #: Any number of inputs can be drawn.
    size = None

    def draw(self, num: int, generator: torch.Generator) -> torch.Tensor:
        """``(num, d)`` inputs from ``generator``."""
        noise = torch.randn(num, self.mean.numel(), generator=generator, dtype=torch.float64)
        return self.mean + self.scale * noise

    def arrays(self) -> dict[str, np.ndarray]:
        return {"unlabeled_mean": self.mean.numpy(), "unlabeled_scale": self.scale.numpy()}


@dataclass(frozen=True, eq=False)
class InputPool:
    """A finite pool of held-out inputs, used neither to train nor to test; a draw is a random subset.

    Attributes:
        inputs: ``(K, d)``, in the problem's coordinates (standardized like its training inputs).
    """

    inputs: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.inputs.shape[0])

    def draw(self, num: int, generator: torch.Generator) -> torch.Tensor:
        """``num`` of the pool's inputs, without replacement, in an order from ``generator``: ``(num, d)``."""
        if num > self.size:
            raise ProblemError(f"asked for {num} unlabeled inputs, but the held-out pool has {self.size}")
        return self.inputs[torch.randperm(self.size, generator=generator)[:num]]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"X_unlabeled": self.inputs.numpy()}


def _radii_to(inputs: str, nu: float | None, directions: torch.Tensor, generator: torch.Generator | None
               ) -> torch.Tensor:
    """Standard Gaussian points ``z`` ``(N, d)`` moved to ``inputs``' distribution by a per-point factor.

    ``sphere``: ``sqrt(d) z / ||z||`` (no randomness drawn). ``student_t``: ``sqrt(nu - 2) z / sqrt(g)``,
    ``g ~ chi2(nu) = 2 Gamma(nu / 2)`` drawn from ``generator``, one per point (``sqrt((nu - 2) / nu)`` times the
    standard multivariate t ``z / sqrt(g / nu)``, whose covariance is ``nu / (nu - 2) I``). ``gaussian``: ``z``.
    """
    if inputs == "sphere":
        return directions * (math.sqrt(directions.shape[-1]) / directions.norm(dim=-1, keepdim=True))
    if inputs == "student_t":
        shape = torch.full((directions.shape[0],), nu / 2.0, dtype=torch.float64)
        chi2 = 2.0 * torch._standard_gamma(shape, generator=generator)
        return directions * torch.sqrt((nu - 2.0) / chi2).unsqueeze(-1)
    return directions


def checked_inputs(data: str, inputs: str, nu: float | None) -> float | None:
    """``nu`` checked against the teacher's input distribution ``inputs`` (as a float, or ``None``).

    Raises:
        ProblemError: an unknown distribution, one other than ``gaussian`` for a data set other than the teacher,
            ``student_t`` without ``nu`` or with ``nu <= 2`` (no covariance), or ``nu`` with other inputs.
    """
    if inputs not in INPUT_DISTRIBUTIONS:
        raise ProblemError(f"unknown inputs {inputs!r}; expected one of {', '.join(INPUT_DISTRIBUTIONS)}")
    if inputs != "gaussian" and data != "teacher":
        raise ProblemError(f"inputs {inputs!r} apply to the teacher data set only, not {data}")
    if inputs != "student_t":
        if nu is not None:
            raise ProblemError(f"nu (degrees of freedom) applies to inputs 'student_t' only, not {inputs!r}")
        return None
    if nu is None:
        raise ProblemError("inputs 'student_t' need nu, their degrees of freedom (a number above 2)")
    if isinstance(nu, bool) or not isinstance(nu, (int, float)) or not math.isfinite(nu) or nu <= 2:
        raise ProblemError(f"nu must be a finite number above 2 (the Student-t has no covariance for nu <= 2), "
                           f"got {nu!r}")
    return float(nu)


@dataclass(frozen=True, eq=False)
class RadialInputs:
    """Unlabeled inputs drawn afresh from a teacher's ``sphere`` or ``student_t`` distribution (covariance ``I_d``).

    A draw is a standard Gaussian ``z`` ``(num, d)`` moved by :func:`_radii_to` (for ``student_t`` one
    ``chi2(nu)`` per point after all of ``z``), exactly as the teacher's own inputs are made; these inputs
    are not standardized, so no mean or scale enters.

    Attributes:
        num_features: ``d``.
        inputs: ``"sphere"`` or ``"student_t"``.
        nu: The Student-t's degrees of freedom (``None`` for the sphere).
    """

    num_features: int
    inputs: str
    nu: float | None = None

    #: Any number of inputs can be drawn.
    size = None

    def __post_init__(self) -> None:
        if self.inputs not in ("sphere", "student_t"):
            raise ProblemError(f"RadialInputs draw 'sphere' or 'student_t' inputs, got {self.inputs!r}")
        object.__setattr__(self, "nu", checked_inputs("teacher", self.inputs, self.nu))

    def draw(self, num: int, generator: torch.Generator) -> torch.Tensor:
        """``(num, d)`` inputs from ``generator``."""
        directions = torch.randn(num, self.num_features, generator=generator, dtype=torch.float64)
        return _radii_to(self.inputs, self.nu, directions, generator)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"unlabeled_inputs": np.array(self.inputs), "unlabeled_features": np.array(self.num_features),
                **({"unlabeled_nu": np.array(self.nu)} if self.nu is not None else {})}


def unlabeled_from_arrays(arrays: dict) -> GaussianInputs | InputPool | RadialInputs | None:
    """The unlabeled inputs a problem file holds (popped from ``arrays``), or ``None``."""
    if "unlabeled_inputs" in arrays:
        if "unlabeled_features" not in arrays:
            raise ProblemError("a problem file with unlabeled_inputs needs unlabeled_features")
        nu = arrays.pop("unlabeled_nu", None)
        return RadialInputs(int(arrays.pop("unlabeled_features")), str(arrays.pop("unlabeled_inputs")),
                            None if nu is None else float(nu))
    if "X_unlabeled" in arrays:
        return InputPool(_float64("X_unlabeled", arrays.pop("X_unlabeled"), 2))
    if "unlabeled_mean" in arrays or "unlabeled_scale" in arrays:
        if not ("unlabeled_mean" in arrays and "unlabeled_scale" in arrays):
            raise ProblemError("a problem file needs both unlabeled_mean and unlabeled_scale, or neither")
        return GaussianInputs(_float64("unlabeled_mean", arrays.pop("unlabeled_mean"), 1),
                              _float64("unlabeled_scale", arrays.pop("unlabeled_scale"), 1))
    return None


@dataclass(frozen=True, eq=False)
class SupervisedProblem:
    """A supervised task: ``(X_train, y_train)`` to fit, ``(X_test, y_test)`` to generalize to.

    Attributes:
        X_train: ``(n, d)`` training inputs.
        y_train: ``(n,)`` training targets (``-1``/``+1`` labels for the logistic loss).
        X_test: ``(t, d)`` test inputs.
        y_test: ``(t,)`` test targets.
        loss: ``"squared"`` or ``"logistic"``.
        metadata: How it was made (data set, seed, sizes, ...).
        unlabeled: Where unlabeled inputs like the training inputs come from
            (:class:`GaussianInputs`, :class:`RadialInputs`, :class:`InputPool`), or ``None``.
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    loss: str = "squared"
    metadata: dict = field(default_factory=dict)
    unlabeled: GaussianInputs | InputPool | RadialInputs | None = None

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ProblemError(f"unknown loss {self.loss!r}; expected one of {', '.join(LOSSES)}")
        x_train, x_test = _float64("X_train", self.X_train, 2), _float64("X_test", self.X_test, 2)
        y_train, y_test = _float64("y_train", self.y_train, 1), _float64("y_test", self.y_test, 1)
        if len(x_train) < 1 or len(x_test) < 1:
            raise ProblemError("a supervised problem needs at least one training and one test point")
        if x_train.shape[1] != x_test.shape[1]:
            raise ProblemError(f"X_train has {x_train.shape[1]} features but X_test has {x_test.shape[1]}")
        for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            if len(x) != len(y):
                raise ProblemError(f"X_{name} has {len(x)} points but y_{name} has {len(y)} targets")
        if self.loss == "logistic":
            for name, y in (("y_train", y_train), ("y_test", y_test)):
                if not bool(((y == 1) | (y == -1)).all()):
                    raise ProblemError(f"{name}: the logistic loss needs labels -1 and +1")
        for name, value in (("X_train", x_train), ("y_train", y_train), ("X_test", x_test), ("y_test", y_test)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "metadata", dict(self.metadata))
        if self.unlabeled is not None:
            if not isinstance(self.unlabeled, (GaussianInputs, InputPool, RadialInputs)):
                raise ProblemError(f"unlabeled must be GaussianInputs, RadialInputs, InputPool or None, "
                                   f"got {self.unlabeled!r}")
            width = (self.unlabeled.inputs.shape[1] if isinstance(self.unlabeled, InputPool)
                     else self.unlabeled.num_features if isinstance(self.unlabeled, RadialInputs)
                     else self.unlabeled.mean.numel())
            if width != x_train.shape[1]:
                raise ProblemError(f"the unlabeled inputs have {width} features but X_train has {x_train.shape[1]}")

    # ------------------------------------------------------------------ shape
    task = "supervised"

    @property
    def num_train(self) -> int:
        return int(self.X_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.X_test.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.X_train.shape[1])

    def inputs(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``[X_train; X_test]``: ``(n + t, d)``, the points a model's outputs are computed on."""
        return torch.cat([self.X_train, self.X_test]).to(device=device, dtype=dtype)

    def targets(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``[y_train; y_test]``: ``(n + t,)``."""
        return torch.cat([self.y_train, self.y_test]).to(device=device, dtype=dtype)

    @property
    def num_measurements(self) -> int:
        """``n``: the training points (the name matrix problems use)."""
        return self.num_train

    @property
    def num_unlabeled(self) -> int | None:
        """How many unlabeled inputs can be drawn: ``None`` for any number, 0 for none."""
        return 0 if self.unlabeled is None else self.unlabeled.size

    def unlabeled_inputs(self, num: int, generator: torch.Generator) -> torch.Tensor:
        """``num`` unlabeled inputs drawn like the training inputs (no labels): ``(num, d)``.

        Args:
            num: How many.
            generator: Where the draw's randomness comes from (a caller derives it from its
                run's seed, so the inputs do not depend on the batch the run is in).

        Raises:
            ProblemError: the problem has no unlabeled inputs, or fewer than ``num``.
        """
        if self.unlabeled is None:
            data = self.metadata.get("data")
            if data in _BUNDLED:
                raise ProblemError(
                    f"{data}: its {self.num_train} training and {self.num_test} test points leave no unlabeled "
                    f"inputs; hold some out by asking for fewer test points (num_test, or test: in a sweep's "
                    f"problem)")
            raise ProblemError("this problem has no unlabeled inputs (a generated problem has them; a problem file "
                               "needs X_unlabeled, or unlabeled_mean and unlabeled_scale)")
        return self.unlabeled.draw(num, generator)

    def summary(self) -> dict:
        """A JSON-friendly description (the CLI's ``problem`` key)."""
        return {"task": self.task, "loss": self.loss, "train": self.num_train, "test": self.num_test,
                "features": self.num_features, **self.metadata}

    # ------------------------------------------------------------------ losses
    def tensors(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> SupervisedTensors:
        """The task's inputs, targets and losses on ``device`` (:class:`SupervisedTensors`)."""
        return SupervisedTensors(self.inputs(device, dtype), self.targets(device, dtype), self.num_train, self.loss)

    def losses(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses of outputs on ``[X_train; X_test]``, batched over leading axes.

        Args:
            outputs: ``(..., n + t)``.

        Returns:
            ``train_loss`` and ``gen_loss`` (the test loss), each ``(...)``, and for the
            logistic loss ``train_error`` and ``test_error`` as well.
        """
        size = self.num_train + self.num_test
        if outputs.shape[-1] != size:
            raise ProblemError(f"outputs end in {outputs.shape[-1]} values, expected n + t = {size}")
        tensors = self.tensors(outputs.device, outputs.dtype)
        train, gen = tensors.losses(outputs)
        return {"train_loss": train, "gen_loss": gen, **tensors.extra_metrics(outputs)}

    # ---------------------------------------------------------------- storage
    def save(self, path: str | Path) -> Path:
        """Write ``.npz`` with the four arrays, the loss, the metadata (JSON) and the unlabeled inputs' source
        (``X_unlabeled``; ``unlabeled_mean`` and ``unlabeled_scale``; or ``unlabeled_inputs``,
        ``unlabeled_features`` and for the Student-t ``unlabeled_nu``) where there is one."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        unlabeled = self.unlabeled.arrays() if self.unlabeled is not None else {}
        np.savez(path, X_train=self.X_train.numpy(), y_train=self.y_train.numpy(), X_test=self.X_test.numpy(),
                 y_test=self.y_test.numpy(), task=np.array(self.task), loss=np.array(self.loss),
                 metadata=np.array(json.dumps(self.metadata, sort_keys=True, default=str)), **unlabeled)
        return path

    def __repr__(self) -> str:
        source = self.metadata.get("data", "custom")
        return (f"SupervisedProblem(data={source!r}, loss={self.loss!r}, train={self.num_train}, "
                f"test={self.num_test}, features={self.num_features})")


# ---------------------------------------------------------------------- builders
def _standardization(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training inputs' mean and standard deviation (1 for a constant feature: centred, not divided by 0)."""
    mean = train.mean(0)
    std = train.std(0)
    return mean, np.where(std > 0, std, 1.0)


def _teacher(num_points: int, num_features: int, hidden: int, noise: float, generator: torch.Generator,
             inputs: str = "gaussian", nu: float | None = None, radii: torch.Generator | None = None):
    """Inputs and noisy teacher outputs. The draws from ``generator`` (``z``, ``B``, ``a``, the noise) are the same
    whichever ``inputs``; the Student-t's ``chi2`` draws come from ``radii``, so the split drawn after is too."""
    directions = torch.randn(num_points, num_features, generator=generator, dtype=torch.float64)
    first = torch.randn(hidden, num_features, generator=generator, dtype=torch.float64)
    second = torch.randn(hidden, generator=generator, dtype=torch.float64)
    points = _radii_to(inputs, nu, directions, radii)
    clean = torch.tanh(points @ first.T / math.sqrt(num_features)) @ second / math.sqrt(hidden)
    noisy = clean + noise * torch.randn(num_points, generator=generator, dtype=torch.float64)
    return points.numpy(), noisy.numpy()


def _linear_teacher(num_points: int, num_features: int, nonzero: int | None, noise: float,
                    generator: torch.Generator) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Gaussian inputs, labels and ``w*``: labels ``sign(<x, w*> + noise N(0, 1))``, ``w*`` with ``nonzero`` random
    entries of +-1 (``None``: dense standard Gaussian), normalized to unit norm."""
    inputs = torch.randn(num_points, num_features, generator=generator, dtype=torch.float64)
    if nonzero is None:
        teacher = torch.randn(num_features, generator=generator, dtype=torch.float64)
    else:
        teacher = torch.zeros(num_features, dtype=torch.float64)
        support = torch.randperm(num_features, generator=generator)[:nonzero]
        signs = torch.randint(0, 2, (nonzero,), generator=generator).to(torch.float64).mul_(2).sub_(1)
        teacher[support] = signs
    teacher /= teacher.norm()
    noisy = inputs @ teacher + noise * torch.randn(num_points, generator=generator, dtype=torch.float64)
    return inputs.numpy(), np.where(noisy.numpy() > 0, 1.0, -1.0), teacher.tolist()


def _pair(inputs: np.ndarray, digits: np.ndarray, classes: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The points of the two ``classes`` (in their order in the data set) and their labels: ``-1`` for
    ``classes[0]``, ``+1`` for ``classes[1]``."""
    keep = np.isin(digits, classes)
    return inputs[keep].astype(np.float64), np.where(digits[keep] == classes[1], 1.0, -1.0)


def checked_classes(data: str, classes) -> tuple[int, int] | None:
    """The pair of classes ``data`` keeps: ``classes`` checked, or the data set's default pair for ``None``;
    ``None`` for a data set without classes (where ``classes`` must be ``None``)."""
    if data not in CLASS_DATASETS:
        if classes is not None:
            raise ProblemError(f"classes apply to the data sets with digit classes ({', '.join(CLASS_DATASETS)}); "
                               f"{data} has none")
        return None
    if classes is None:
        return CLASS_DATASETS[data]
    pair = tuple(classes) if isinstance(classes, (list, tuple)) else (classes,)
    if len(pair) != 2 or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in pair):
        raise ProblemError(f"classes must be two class labels such as (0, 1), got {classes!r}")
    outside = [int(c) for c in pair if not 0 <= c < _NUM_CLASSES]
    if outside:
        raise ProblemError(f"classes must be digits from 0 to {_NUM_CLASSES - 1} ({data} has {_NUM_CLASSES}), "
                           f"got {outside[0]}")
    if pair[0] == pair[1]:
        raise ProblemError(f"classes must be two different classes, got {int(pair[0])} twice")
    return int(pair[0]), int(pair[1])


@functools.lru_cache(maxsize=1)
def mnist1d_arrays() -> tuple[np.ndarray, np.ndarray]:
    """MNIST-1D generated by the ``mnist1d`` package with :data:`MNIST1D_ARGS`: ``(inputs, digits)``.

    The package's train and test parts joined in its own (shuffled) order: ``inputs`` ``(10000, 40)`` float64,
    ``digits`` ``(10000,)`` integers 0-9, 1,000 of each. Made once per process (a few seconds) and read-only.
    The generator seeds NumPy's and Python's global generators (``mnist1d.utils.set_seed``); both states are
    saved before and restored after, so generating the data changes no other random numbers.

    Raises:
        ProblemError: the ``mnist1d`` package is not installed (the message names the extra).
    """
    try:
        from mnist1d.data import make_dataset
    except ImportError as exc:
        raise ProblemError(f"the mnist1d data set needs the mnist1d package: {MNIST1D_EXTRA}") from exc
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        made = make_dataset(types.SimpleNamespace(**MNIST1D_ARGS))
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    inputs = np.concatenate([made["x"], made["x_test"]]).astype(np.float64)
    digits = np.concatenate([made["y"], made["y_test"]]).astype(np.int64)
    inputs.flags.writeable = digits.flags.writeable = False
    return inputs, digits


def _sklearn(data: str, classes: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(inputs, targets, is_classification)`` of a data set bundled with scikit-learn."""
    try:
        from sklearn import datasets
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise ProblemError("the real data sets need scikit-learn: pip install scikit-learn") from exc
    if data == "digits":
        bunch = datasets.load_digits()
        return (*_pair(bunch.data, bunch.target, classes), True)
    if data == "breast_cancer":
        bunch = datasets.load_breast_cancer()
        return bunch.data.astype(np.float64), np.where(bunch.target == 1, 1.0, -1.0), True
    bunch = datasets.load_diabetes()
    return bunch.data.astype(np.float64), bunch.target.astype(np.float64), False


def make_supervised(
    data: str = "teacher",
    num_train: int = 100,
    *,
    seed: int = 0,
    loss: str | None = None,
    num_test: int | None = None,
    num_features: int = 10,
    teacher_width: int = 4,
    noise: float = 0.0,
    classes: tuple[int, int] | None = None,
    teacher_nonzero: int = 3,
    inputs: str = "gaussian",
    nu: float | None = None,
) -> SupervisedProblem:
    """A supervised problem from a data set, split and standardized from ``(seed, "data")``.

    Args:
        data: ``"teacher"`` (regression on a random tanh network), ``"sparse_teacher"`` /
            ``"linear_teacher"`` (separable binary labels ``sign(<x, w*>)`` of a sparse or
            dense ``w*``), the scikit-learn sets ``"digits" | "breast_cancer" | "diabetes"``, or
            ``"mnist1d"`` (generated by the ``mnist1d`` package: the optional extra).
        num_train: Training points.
        seed: Seed of the split (and of the teacher's data).
        loss: ``"squared"`` or ``"logistic"``; default: logistic for the classification
            sets (digits, breast_cancer, mnist1d, the linear teachers), squared otherwise.
        num_test: Test points (default: all remaining points; 1000 for the teacher).
        num_features: Input dimension of the teacher.
        teacher_width: Hidden units of the teacher.
        noise: Standard deviation of the teacher's label noise.
        classes: The two digits ``(A, B)`` kept from ``digits`` or ``mnist1d``: ``A`` is labelled ``-1``, ``B``
            ``+1`` (default: 3 and 8 for digits, 0 and 1 for mnist1d); ``None`` for the other data sets.
        teacher_nonzero: Non-zero entries of the ``sparse_teacher``'s ``w*``.
        inputs: The teacher's input distribution: ``"gaussian"`` (standardized like today's), ``"sphere"`` or
            ``"student_t"`` (covariance ``I_d``, not standardized); other data sets take ``"gaussian"`` only.
        nu: The ``student_t``'s degrees of freedom, above 2 (``None`` for the other inputs).

    Raises:
        ProblemError: unknown data set or loss, a size that is not a positive integer, more
            points asked for than exist, classes that are not two different digits (or given for a data
            set without classes), mnist1d without the ``mnist1d`` package, or inputs and ``nu`` that do not
            fit (:func:`checked_inputs`).
    """
    if data not in DATASETS:
        raise ProblemError(f"unknown data set {data!r}; expected one of {', '.join(DATASETS)}")
    if isinstance(num_train, bool) or not isinstance(num_train, int) or num_train < 1:
        raise ProblemError(f"num_train must be a positive integer, got {num_train!r}")
    if num_test is not None and (isinstance(num_test, bool) or not isinstance(num_test, int) or num_test < 1):
        raise ProblemError(f"num_test must be a positive integer or None, got {num_test!r}")
    for name, value in (("num_features", num_features), ("teacher_width", teacher_width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ProblemError(f"{name} must be a positive integer, got {value!r}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ProblemError(f"noise must be a non-negative number, got {noise!r}")
    classes = checked_classes(data, classes)
    nu = checked_inputs(data, inputs, nu)
    distribution = inputs
    generator = make_generator(seed, "data")
    if data == "teacher":
        total = num_train + (1000 if num_test is None else num_test)
        radii = make_generator(seed, "data_radii") if distribution == "student_t" else None
        inputs, targets = _teacher(total, num_features, teacher_width, noise, generator, distribution, nu, radii)
        classification = False
    elif data in LINEAR_TEACHERS:
        if data == "sparse_teacher" and not 1 <= teacher_nonzero <= num_features:
            raise ProblemError(f"teacher_nonzero must be between 1 and num_features = {num_features}, "
                               f"got {teacher_nonzero!r}")
        total = num_train + (10_000 if num_test is None else num_test)
        inputs, targets, teacher = _linear_teacher(total, num_features,
                                                   teacher_nonzero if data == "sparse_teacher" else None,
                                                   noise, generator)
        classification = True
    elif data == "mnist1d":
        inputs, targets = _pair(*mnist1d_arrays(), classes)
        classification = True
    else:
        inputs, targets, classification = _sklearn(data, classes)
    loss = loss or ("logistic" if classification else "squared")
    if loss not in LOSSES:
        raise ProblemError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    available = len(inputs)
    if num_train >= available:
        raise ProblemError(f"{data} has {available} points: num_train = {num_train} leaves none to test on")
    order = torch.randperm(available, generator=generator).numpy()
    train_index = order[:num_train]
    rest = order[num_train:]
    test_index = rest if num_test is None else rest[:num_test]
    if num_test is not None and num_test > len(rest):
        raise ProblemError(f"{data} has {available} points: cannot take {num_train} to train and {num_test} to test")
    held_out = rest[len(test_index):]  # neither train nor test: the finite sets' unlabeled pool
    features = inputs.shape[1]
    if distribution != "gaussian":
        # Covariance I_d already; standardizing would take the sphere's points off the sphere and rescale
        # heavy-tailed Student-t inputs by their (noisy) sample standard deviation.
        x_train, x_test = inputs[train_index], inputs[test_index]
        unlabeled = RadialInputs(features, distribution, nu)
    elif data in LINEAR_TEACHERS:
        # Already standard Gaussian; re-standardizing would move the points off the
        # teacher's separating hyperplane through the origin.
        x_train, x_test = inputs[train_index], inputs[test_index]
        unlabeled = GaussianInputs(torch.zeros(features, dtype=torch.float64),
                                   torch.ones(features, dtype=torch.float64))
    else:
        mean, std = _standardization(inputs[train_index])
        x_train, x_test = (inputs[train_index] - mean) / std, (inputs[test_index] - mean) / std
        if data == "teacher":  # N(0, I) inputs, standardized: N(-mean / std, diag(1 / std)^2)
            unlabeled = GaussianInputs(torch.as_tensor(-mean / std), torch.as_tensor(1.0 / std))
        else:
            unlabeled = InputPool(torch.as_tensor((inputs[held_out] - mean) / std)) if len(held_out) else None
    y_train, y_test = targets[train_index], targets[test_index]
    if loss == "logistic" and not classification:
        # The teacher's label is the sign of its noisy output; a regression data set's
        # target is split at the training median (the upper half is +1).
        cut = 0.0 if data == "teacher" else np.median(y_train)
        y_train, y_test = np.where(y_train > cut, 1.0, -1.0), np.where(y_test > cut, 1.0, -1.0)
    elif loss == "squared" and not classification:
        mean, std = y_train.mean(), y_train.std() or 1.0
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
    metadata = {"data": data, "seed": seed, "num_train": num_train, "loss": loss}
    if data == "teacher":
        metadata.update(num_features=num_features, teacher_width=teacher_width, noise=noise)
        if distribution != "gaussian":  # the Gaussian's metadata as before
            metadata["inputs"] = distribution
            if nu is not None:
                metadata["nu"] = nu
    if data in LINEAR_TEACHERS:
        metadata.update(num_features=num_features, noise=noise, teacher=teacher)
        if data == "sparse_teacher":
            metadata["teacher_nonzero"] = teacher_nonzero
    if classes is not None:
        metadata["classes"] = list(classes)
    return SupervisedProblem(x_train, y_train, x_test, y_test, loss=loss, metadata=metadata, unlabeled=unlabeled)
