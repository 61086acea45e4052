"""Matrix sensing and completion problems (arXiv 2506.03931, Sec. 2).

A problem is a set of training measurements ``(A_i, y_i)`` with ``y_i = <A_i, W*>``
and a generalization basis ``{B}``: an orthonormal basis of the orthogonal
complement of ``span{A_i}``, with targets ``<B, W*>``. Losses follow docs/design.md:

    L_train(W) = (1/m) sum_i (<A_i, W> - y_i)^2
    L_gen(W)   = (1/t) sum_B (<B, W> - <B, W*>)^2

All arrays are kept as float64 CPU tensors; :meth:`Problem.to` moves them.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from .._rng import make_generator
from ..errors import ProblemError

__all__ = [
    "Problem",
    "ProblemTensors",
    "make_ground_truth",
    "make_sensing",
    "make_completion",
    "make_problem",
    "complement_basis",
    "load_problem",
    "save_problem",
]

Task = Literal["sensing", "completion", "custom"]

# Tolerances for checking a user-supplied basis and targets (float64 arithmetic).
_ORTHO_TOL = 1e-6
_TARGET_TOL = 1e-6


def _as_float64(name: str, value, ndim: int, *, at_least: bool = False) -> torch.Tensor:
    if isinstance(value, np.ndarray) and value.dtype.kind not in "biuf":
        # Complex values would lose their imaginary part and strings/objects are not numbers.
        raise ProblemError(f"{name} must be a real numeric array, got dtype {value.dtype}")
    if isinstance(value, torch.Tensor) and (value.is_complex() or value.dtype == torch.bool):
        raise ProblemError(f"{name} must be a real numeric array, got dtype {value.dtype}")
    try:
        tensor = torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=torch.float64).cpu()
    except (TypeError, ValueError) as exc:
        raise ProblemError(f"{name} must be a numeric array: {exc}") from exc
    if tensor.ndim < ndim if at_least else tensor.ndim != ndim:
        raise ProblemError(f"{name} must have {'at least ' if at_least else ''}{ndim} dimensions, "
                           f"got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise ProblemError(f"{name} contains {bad} NaN or infinite value(s)")
    return tensor.contiguous()


@dataclass(frozen=True)
class ProblemTensors:
    """The task's losses: flattened, stacked measurement matrices on one device, and the contractions.

    Every loss in the package comes from here: a model's output ``W`` is flattened once
    and contracted with the stacked operator (all ``<A_i, W>`` and ``<B, W>`` at once),
    and the residuals against the targets become ``(L_train, L_gen)``. Two layouts:

    * batch-first, ``flat (..., n)`` (GD, autograd, :meth:`Problem.losses`):
      :meth:`losses`, and for GD's hand-written gradient :meth:`train_loss_and_residual`
      and :meth:`train_gradient`;
    * batch-last, ``flat (n, count)`` (G&C's samplers write each entry of ``W`` as a
      contiguous vector over the draws): :meth:`batch_last_residuals` and
      :meth:`batch_last_losses`, two GEMMs.

    The operator may be stacked per run (:meth:`stack`): run ``s`` of a batch-first
    ``flat (S, n)`` is then contracted with its own problem's operator.

    Attributes:
        operator: ``(n, m + t)`` matrix whose columns are the flattened ``A_i`` then
            the flattened ``B``; ``vec(W) @ operator`` gives all inner products at once.
            ``(S, n, m + t)`` when stacked.
        targets: ``(m + t,)`` vector ``[b_train, b_test]``; ``(S, m + t)`` when stacked.
        num_train: ``m``.
    """

    operator: torch.Tensor
    targets: torch.Tensor
    num_train: int

    @classmethod
    def stack(cls, tensors: Sequence[ProblemTensors]) -> ProblemTensors:
        """One operator per run, for problems of one shape (the runs of a GD batch)."""
        if len({t.num_train for t in tensors}) != 1:
            raise ProblemError("stacked problems must have the same number of measurements")
        return cls(torch.stack([t.operator for t in tensors]), torch.stack([t.targets for t in tensors]),
                   tensors[0].num_train)

    def to(self, dtype: torch.dtype) -> ProblemTensors:
        """The same tensors in ``dtype``."""
        return ProblemTensors(self.operator.to(dtype), self.targets.to(dtype), self.num_train)

    @property
    def stacked(self) -> bool:
        return self.operator.ndim == 3

    @property
    def num_outputs(self) -> int:
        """``m + t``: measurements and basis matrices."""
        return int(self.operator.shape[-1])

    #: Metrics besides the two losses (a classification task adds its error rates).
    metric_names: ClassVar[tuple[str, ...]] = ()

    def extra_metrics(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Metrics besides ``(L_train, L_gen)``: none for linear measurements."""
        return {}

    def linear_predictor_metrics(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a linear predictor's ``w`` shows beyond the losses: nothing a matrix task scores."""
        return {}

    def run(self, index: int) -> "ProblemTensors":
        """Run ``index``'s tensors of a stacked batch (the tensors themselves when not stacked)."""
        if not self.stacked:
            return self
        return ProblemTensors(self.operator[index], self.targets[index], self.num_train)

    def training_view(self) -> "ProblemTensors":
        """The tensors a model needs for the training outputs: all of them (the model's
        output is the whole array, whatever the measurements)."""
        return self

    def train_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """The ``m`` values the training loss sees, ``<A_i, W>``, of flattened outputs ``(..., n)``."""
        return torch.matmul(outputs, self.operator[..., : self.num_train])

    def loss_derivatives(self, train_outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First and second derivatives of ``L_train`` in each train output ``z_i = <A_i, W>``.

        ``L = (1/m) sum (z_i - y_i)^2``: ``dL/dz = (2/m)(z - y)`` and the (diagonal)
        Hessian ``2/m``. The generalized Gauss-Newton matrix is ``J^T diag(h) J``.
        """
        m = self.num_train
        residual = train_outputs - self.targets[..., :m]
        return residual * (2.0 / m), torch.full_like(residual, 2.0 / m)

    # ------------------------------------------------------------ batch-first
    def _contract(self, flat: torch.Tensor, operator: torch.Tensor) -> torch.Tensor:
        if operator.ndim == 3:
            return torch.bmm(flat.unsqueeze(1), operator).squeeze(1)
        return torch.matmul(flat, operator)

    def losses(self, flat_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Train and generalization losses of a batch of end-to-end matrices.

        Args:
            flat_weights: ``(..., rows * cols)`` flattened end-to-end matrices, in the
                operator's dtype (``(S, rows * cols)`` when stacked).

        Returns:
            ``(train_loss, gen_loss)``, each of shape ``(...)``.
        """
        residual = self._contract(flat_weights, self.operator) - self.targets
        squared = residual.square()
        return squared[..., : self.num_train].mean(-1), squared[..., self.num_train :].mean(-1)

    @cached_property
    def _train_operator(self) -> torch.Tensor:
        return self.operator[..., : self.num_train].contiguous()

    @cached_property
    def _train_targets(self) -> torch.Tensor:
        return self.targets[..., : self.num_train]

    @cached_property
    def _train_gradient_operator(self) -> torch.Tensor:
        # (2/m) A^T: maps the train residual to dL_train/dvec(W).
        return (self._train_operator.transpose(-1, -2) * (2.0 / self.num_train)).contiguous()

    def train_loss_and_residual(self, flat_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_train (...), r (..., m))`` with the train residual ``r = A vec(W) - y``.

        Only the ``m`` training measurements are contracted (no basis: GD's steps).
        """
        residual = self._contract(flat_weights, self._train_operator).sub_(self._train_targets)
        return residual.square().mean(-1), residual

    def train_gradient(self, residual: torch.Tensor) -> torch.Tensor:
        """``dL_train / dvec(W) = (2/m) A^T r`` from the train residual ``r (..., m)``: ``(..., n)``."""
        return self._contract(residual, self._train_gradient_operator)

    # ------------------------------------------------------------- batch-last
    @cached_property
    def _operator_t(self) -> torch.Tensor:
        return self.operator.T.contiguous()  # (m + t, n)

    @cached_property
    def _averaging(self) -> torch.Tensor:
        """``(2, m + t)``: row 0 averages the train outputs, row 1 the basis outputs."""
        total, m = self.num_outputs, self.num_train
        averaging = torch.zeros(2, total, dtype=self.operator.dtype, device=self.operator.device)
        averaging[0, :m] = 1.0 / m
        averaging[1, m:] = 1.0 / (total - m)
        return averaging

    def batch_last_residuals(self, flat: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``O vec(W) - b`` for batch-last ``flat (n, count)``: ``(m + t, count)``, one GEMM (into ``out``)."""
        return torch.addmm(self.targets.unsqueeze(1), self._operator_t, flat, alpha=1.0, beta=-1.0, out=out)

    def batch_last_losses(self, residual: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``(2, count)`` losses, rows ``(train, gen)``, of ``residual (m + t, count)`` (squared in place)."""
        return torch.mm(self._averaging, residual.square_(), out=out)


@dataclass(frozen=True, eq=False)
class Problem:
    """Linear measurements of an output array: matrix sensing / completion (and any order).

    The measured array has :attr:`shape` (``(rows, cols)`` for a matrix, the generated
    tasks; any order ``>= 1`` from arrays); every measurement is an array of that shape.

    Attributes:
        A_train: ``(m, rows, cols)`` measurement matrices (``(m, *shape)`` in general).
        b_train: ``(m,)`` measurements ``<A_i, W*>``.
        A_test: ``(t, rows, cols)`` orthonormal basis of the complement of span{A_i}.
        b_test: ``(t,)`` targets ``<B, W*>``.
        W_star: optional ``(rows, cols)`` ground truth.
        task: ``"sensing"``, ``"completion"`` or ``"custom"`` (built from arrays).
        metadata: free-form generation parameters (seed, rank, norm, ...).
    """

    A_train: torch.Tensor
    b_train: torch.Tensor
    A_test: torch.Tensor
    b_test: torch.Tensor
    W_star: torch.Tensor | None = None
    task: str = "custom"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        a_train = _as_float64("A_train", self.A_train, 2, at_least=True)
        b_train = _as_float64("b_train", self.b_train, 1)
        a_test = _as_float64("A_test", self.A_test, 2, at_least=True)
        b_test = _as_float64("b_test", self.b_test, 1)
        m, shape = a_train.shape[0], tuple(a_train.shape[1:])
        what = f"a {'x'.join(map(str, shape))} {'matrix' if len(shape) == 2 else 'array'}"
        if m < 1:
            raise ProblemError("A_train must hold at least one measurement matrix")
        if b_train.shape[0] != m:
            raise ProblemError(f"b_train has {b_train.shape[0]} entries but A_train has {m} matrices")
        if tuple(a_test.shape[1:]) != shape:
            raise ProblemError(
                f"A_test matrices are {tuple(a_test.shape[1:])} but A_train matrices are {shape}"
            )
        t = a_test.shape[0]
        if t < 1:
            raise ProblemError(
                f"A_test is empty: with {m} measurements of {what} nothing is left "
                "to generalize to; use fewer measurements than its number of entries"
            )
        if b_test.shape[0] != t:
            raise ProblemError(f"b_test has {b_test.shape[0]} entries but A_test has {t} matrices")
        n = math.prod(shape)
        if self.task in ("sensing", "tensor-sensing") and m >= n:
            raise ProblemError(
                f"{m} sensing measurements of {what}: need fewer than its {n} entries (rows*cols)"
            )
        w_star = None
        if self.W_star is not None:
            w_star = _as_float64("W_star", self.W_star, len(shape))
            if tuple(w_star.shape) != shape:
                raise ProblemError(f"W_star has shape {tuple(w_star.shape)}, expected {shape}")
        self._check_basis(a_train.reshape(m, n), a_test.reshape(t, n))
        if w_star is not None:
            flat = w_star.reshape(n)
            for name, mats, targets in (("b_train", a_train, b_train), ("b_test", a_test, b_test)):
                expected = mats.reshape(-1, n) @ flat
                error = (expected - targets).abs().max().item()
                if error > _TARGET_TOL * max(1.0, flat.norm().item()):
                    raise ProblemError(
                        f"{name} disagrees with W_star by up to {error:.3g}; "
                        f"{name} must equal the inner products with W_star"
                    )
        object.__setattr__(self, "A_train", a_train)
        object.__setattr__(self, "b_train", b_train)
        object.__setattr__(self, "A_test", a_test)
        object.__setattr__(self, "b_test", b_test)
        object.__setattr__(self, "W_star", w_star)
        object.__setattr__(self, "metadata", dict(self.metadata))

    @staticmethod
    def _check_basis(train: torch.Tensor, test: torch.Tensor) -> None:
        m, n = train.shape
        t = test.shape[0]
        gram = test @ test.T
        deviation = (gram - torch.eye(t, dtype=gram.dtype)).abs().max().item()
        if deviation > _ORTHO_TOL:
            raise ProblemError(
                f"A_test is not orthonormal (|B B^T - I| up to {deviation:.3g}); "
                "the generalization basis must be orthonormal"
            )
        cross = (train @ test.T).abs().max().item()
        scale = train.norm(dim=1).max().item()
        if cross > _ORTHO_TOL * max(scale, 1.0):
            raise ProblemError(
                f"A_test is not orthogonal to the measurements (|<A_i, B>| up to {cross:.3g}); "
                "the basis must span the orthogonal complement of span{A_i}"
            )
        rank = int(torch.linalg.matrix_rank(train).item())
        if rank + t != n:
            raise ProblemError(
                f"A_test has {t} matrices but the complement of span{{A_i}} has dimension "
                f"{n - rank} (= rows*cols - rank of the measurements)"
            )

    # ------------------------------------------------------------------ shapes
    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the measured array (``(rows, cols)`` for a matrix)."""
        return tuple(int(size) for size in self.A_train.shape[1:])

    @property
    def rows(self) -> int:
        return self._matrix_shape()[0]

    @property
    def cols(self) -> int:
        return self._matrix_shape()[1]

    def _matrix_shape(self) -> tuple[int, int]:
        if len(self.shape) != 2:
            raise ProblemError(f"this problem measures an array of shape {self.shape}, not a matrix")
        return self.shape

    @property
    def num_measurements(self) -> int:
        return int(self.A_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.A_test.shape[0])

    @property
    def num_train(self) -> int:
        """``m``, as every task names its number of training points."""
        return self.num_measurements

    def summary(self) -> dict:
        """A JSON-friendly description (the CLI's ``problem`` key)."""
        size = {"rows": self.rows, "cols": self.cols} if len(self.shape) == 2 else {"shape": list(self.shape)}
        return {"task": self.task, **size, "measurements": self.num_measurements, **self.metadata}

    # ------------------------------------------------------------------ losses
    def tensors(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> ProblemTensors:
        """The flattened measurement operator and targets on ``device``."""
        n = math.prod(self.shape)
        operator = torch.cat([self.A_train.reshape(-1, n), self.A_test.reshape(-1, n)]).T.contiguous()
        targets = torch.cat([self.b_train, self.b_test])
        return ProblemTensors(
            operator=operator.to(device=device, dtype=dtype),
            targets=targets.to(device=device, dtype=dtype),
            num_train=self.num_measurements,
        )

    def losses(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_train, L_gen)`` of end-to-end matrices of shape ``(..., rows, cols)`` (``(..., *shape)``)."""
        order = len(self.shape)
        if tuple(weights.shape[-order:]) != self.shape:
            raise ProblemError(f"weights end in shape {tuple(weights.shape[-order:])}, expected {self.shape}")
        tensors = self.tensors(weights.device, weights.dtype)
        return tensors.losses(weights.reshape(*weights.shape[:-order], -1))

    def mean_squared_target(self) -> float:
        """``mean_B <B, W*>^2``: the generalization loss of ``W = 0``."""
        return float(self.b_test.square().mean())

    # ---------------------------------------------------------------- storage
    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "A_train": self.A_train.numpy(),
            "b_train": self.b_train.numpy(),
            "A_test": self.A_test.numpy(),
            "b_test": self.b_test.numpy(),
        }
        if self.W_star is not None:
            arrays["W_star"] = self.W_star.numpy()
        return arrays

    def save(self, path: str | Path) -> Path:
        """Write the problem to ``path`` as ``.npz`` (see :func:`save_problem`)."""
        return save_problem(self, path)

    def __repr__(self) -> str:
        return (
            f"Problem(task={self.task!r}, "
            + (f"rows={self.rows}, cols={self.cols}, " if len(self.shape) == 2 else f"shape={self.shape}, ")
            + f"measurements={self.num_measurements}, test={self.num_test})"
        )


# ---------------------------------------------------------------------- builders
def make_ground_truth(
    rows: int, cols: int, rank: int, *, norm: float = 1.0, generator: torch.Generator
) -> torch.Tensor:
    """A random ``rows x cols`` matrix of exact rank ``rank`` and Frobenius norm ``norm``.

    ``W* = U V^T`` with i.i.d. standard Gaussian ``U (rows x rank)`` and ``V (cols x rank)``,
    rescaled to the requested norm.
    """
    _check_shape(rows, cols)
    if not isinstance(rank, int) or rank < 1:
        raise ProblemError(f"rank must be a positive integer, got {rank!r}")
    if rank > min(rows, cols):
        raise ProblemError(f"rank {rank} exceeds min(rows, cols) = {min(rows, cols)}")
    if not (math.isfinite(norm) and norm > 0):
        raise ProblemError(f"norm must be a positive finite number, got {norm!r}")
    left = torch.randn(rows, rank, generator=generator, dtype=torch.float64)
    right = torch.randn(cols, rank, generator=generator, dtype=torch.float64)
    truth = left @ right.T
    return truth * (norm / truth.norm())


def complement_basis(measurements: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis of the orthogonal complement of the measurements' span.

    Args:
        measurements: ``(m, rows, cols)``, or ``(m, *shape)`` for an array of any order.

    Returns:
        ``(n - rank, rows, cols)`` (``(n - rank, *shape)``) with ``n`` the number of entries.
    """
    m, shape = measurements.shape[0], tuple(measurements.shape[1:])
    flat = measurements.reshape(m, math.prod(shape)).numpy()
    _u, singular, vh = np.linalg.svd(flat, full_matrices=True)
    tol = singular.max() * max(flat.shape) * np.finfo(np.float64).eps if singular.size else 0.0
    rank = int((singular > tol).sum())
    basis = vh[rank:]
    return torch.from_numpy(np.ascontiguousarray(basis)).reshape(-1, *shape)


def _check_shape(rows: int, cols: int) -> None:
    for name, value in (("rows", rows), ("cols", cols)):
        if not isinstance(value, int) or value < 1:
            raise ProblemError(f"{name} must be a positive integer, got {value!r}")


def _check_measurements(num_measurements: int, rows: int, cols: int) -> None:
    if not isinstance(num_measurements, int) or num_measurements < 1:
        raise ProblemError(f"measurements must be a positive integer, got {num_measurements!r}")
    if num_measurements >= rows * cols:
        raise ProblemError(
            f"measurements = {num_measurements} must be below rows*cols = {rows * cols}, "
            "otherwise W* is determined and there is nothing left to generalize to"
        )


def _data_stream_and_truth(rows, cols, rank, num_measurements, seed, norm):
    """Validate generation parameters; return the ``(seed, "data")`` generator and ``W*``."""
    _check_shape(rows, cols)
    _check_measurements(num_measurements, rows, cols)
    generator = make_generator(seed, "data")
    return generator, make_ground_truth(rows, cols, rank, norm=norm, generator=generator)


def make_sensing(
    rows: int,
    cols: int,
    rank: int,
    num_measurements: int,
    *,
    seed: int = 0,
    norm: float = 1.0,
) -> Problem:
    """Matrix sensing: i.i.d. N(0, 1) measurement matrices scaled to unit Frobenius norm.

    Randomness comes from the ``(seed, "data")`` stream only.
    """
    generator, truth = _data_stream_and_truth(rows, cols, rank, num_measurements, seed, norm)
    measurements = torch.randn(num_measurements, rows, cols, generator=generator, dtype=torch.float64)
    measurements = measurements / measurements.flatten(1).norm(dim=1).reshape(-1, 1, 1)
    return _with_targets(
        "sensing", measurements, truth, seed=seed, rank=rank, norm=norm
    )


def make_completion(
    rows: int,
    cols: int,
    rank: int,
    num_measurements: int,
    *,
    seed: int = 0,
    norm: float = 1.0,
) -> Problem:
    """Matrix completion: one-hot measurements at distinct, uniformly random entries.

    The generalization basis is the one-hot matrices at the unobserved entries.
    """
    generator, truth = _data_stream_and_truth(rows, cols, rank, num_measurements, seed, norm)
    order = torch.randperm(rows * cols, generator=generator)
    observed, unobserved = order[:num_measurements].sort().values, order[num_measurements:].sort().values
    eye = torch.eye(rows * cols, dtype=torch.float64)
    measurements = eye[observed].reshape(-1, rows, cols)
    basis = eye[unobserved].reshape(-1, rows, cols)
    return _with_targets(
        "completion", measurements, truth, basis=basis, seed=seed, rank=rank, norm=norm
    )


def make_problem(
    task: str, rows: int, cols: int, rank: int, num_measurements: int, *, seed: int = 0, norm: float = 1.0
) -> Problem:
    """Dispatch to :func:`make_sensing` or :func:`make_completion` by name."""
    builders = {"sensing": make_sensing, "completion": make_completion}
    if task not in builders:
        raise ProblemError(f"unknown task {task!r}; expected one of {sorted(builders)}")
    return builders[task](rows, cols, rank, num_measurements, seed=seed, norm=norm)


#: The tensor tasks (order-N arrays; ``dims`` gives the shape).
TENSOR_TASKS = ("tensor-sensing", "tensor-completion")


def make_cp_ground_truth(dims: Sequence[int], rank: int, *, norm: float = 1.0,
                         generator: torch.Generator) -> torch.Tensor:
    """A random order-N tensor ``sum_r a_r^(1) x ... x a_r^(N)`` of ``rank`` components and Frobenius norm ``norm``.

    The factors ``(dims[k], rank)`` are i.i.d. standard Gaussian, drawn in the order of ``dims``:
    at order 2 this is :func:`make_ground_truth`'s ``U V^T``, draw for draw.
    """
    dims = _check_dims(dims)
    if not isinstance(rank, int) or rank < 1:
        raise ProblemError(f"rank must be a positive integer, got {rank!r}")
    if len(dims) == 2 and rank > min(dims):
        raise ProblemError(f"rank {rank} exceeds the smallest side of the {'x'.join(map(str, dims))} tensor "
                           f"({min(dims)}): a rank-{rank} tensor of that shape does not exist")
    if not (math.isfinite(norm) and norm > 0):
        raise ProblemError(f"norm must be a positive finite number, got {norm!r}")
    factors = [torch.randn(size, rank, generator=generator, dtype=torch.float64) for size in dims]
    truth = factors[0]
    for factor in factors[1:]:
        # (..., r) x (size, r) -> (..., size, r): one more mode of every component.
        truth = truth.unsqueeze(-2) * factor
    truth = truth.sum(-1)
    return truth * (norm / truth.norm())


def _check_dims(dims: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(dims)
    if len(dims) < 2:
        raise ProblemError(f"dims must give at least two sizes (an order-2 tensor is a matrix), got {dims!r}")
    for value in dims:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ProblemError(f"every size in dims must be a positive integer, got {dims!r}")
    return dims


def make_tensor_problem(task: str, dims: Sequence[int], rank: int, num_measurements: int, *, seed: int = 0,
                        norm: float = 1.0) -> Problem:
    """Order-N tensor sensing or completion, the matrix tasks' conventions with more axes.

    ``tensor-sensing``: i.i.d. N(0, 1) measurement tensors scaled to unit Frobenius norm, the
    generalization basis the orthonormal complement of their span; ``tensor-completion``:
    one-hot measurements at distinct uniformly random entries, the basis the one-hot tensors at
    the others. Ground truth: :func:`make_cp_ground_truth`. Randomness from the ``(seed, "data")``
    stream only, in the matrix tasks' order, so at order 2 the problem equals
    :func:`make_sensing` / :func:`make_completion`'s with the same arguments.
    """
    if task not in TENSOR_TASKS:
        raise ProblemError(f"unknown tensor task {task!r}; expected one of {', '.join(TENSOR_TASKS)}")
    dims = _check_dims(dims)
    entries = math.prod(dims)
    if not isinstance(num_measurements, int) or num_measurements < 1:
        raise ProblemError(f"measurements must be a positive integer, got {num_measurements!r}")
    if num_measurements >= entries:
        raise ProblemError(f"measurements = {num_measurements} must be below the tensor's {entries} entries, "
                           "otherwise it is determined and there is nothing left to generalize to")
    generator = make_generator(seed, "data")
    truth = make_cp_ground_truth(dims, rank, norm=norm, generator=generator)
    metadata = {"seed": seed, "rank": rank, "norm": norm, "dims": list(dims)}
    if task == "tensor-sensing":
        measurements = torch.randn(num_measurements, *dims, generator=generator, dtype=torch.float64)
        norms = measurements.flatten(1).norm(dim=1).reshape(-1, *([1] * len(dims)))
        return _with_targets(task, measurements / norms, truth, **metadata)
    order = torch.randperm(entries, generator=generator)
    observed, unobserved = order[:num_measurements].sort().values, order[num_measurements:].sort().values
    eye = torch.eye(entries, dtype=torch.float64)
    return _with_targets(task, eye[observed].reshape(-1, *dims), truth, basis=eye[unobserved].reshape(-1, *dims),
                         **metadata)


def _with_targets(task, measurements, truth, *, basis=None, **metadata) -> Problem:
    if basis is None:
        basis = complement_basis(measurements)
    n = truth.numel()
    flat = truth.reshape(n)
    return Problem(
        A_train=measurements,
        b_train=measurements.reshape(-1, n) @ flat,
        A_test=basis,
        b_test=basis.reshape(-1, n) @ flat,
        W_star=truth,
        task=task,
        metadata=metadata,
    )


# ----------------------------------------------------------------------- storage
_REQUIRED = ("A_train", "b_train", "A_test", "b_test")
_SUPERVISED = ("X_train", "y_train", "X_test", "y_test")
_FORMAT = (
    "a volumelab problem file is a .npz archive (as written by `volumelab problem make` or "
    "Problem.save) with float arrays A_train (m, rows, cols), b_train (m,), A_test (t, rows, cols), "
    "b_test (t,) and optionally W_star (rows, cols); or, for a supervised problem (SupervisedProblem.save), "
    "X_train (n, d), y_train (n,), X_test (t, d), y_test (t,) and the loss (optionally unlabeled inputs: "
    "X_unlabeled (K, d); unlabeled_mean (d,) and unlabeled_scale (d,); or unlabeled_inputs (a name), "
    "unlabeled_features and unlabeled_nu)"
)


def save_problem(problem: Problem, path: str | Path) -> Path:
    """Save as ``.npz``: arrays ``A_train, b_train, A_test, b_test``, optional ``W_star``, the task and metadata.

    The metadata (seed, rank, norm, ...) is stored as a JSON string and restored by
    :func:`load_problem`.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {k: v for k, v in problem.metadata.items() if k != "source"}
    np.savez(path, **problem.to_arrays(), task=np.array(problem.task),
             metadata=np.array(json.dumps(metadata, sort_keys=True, default=str)))
    return path


def _read_archive(path: Path) -> tuple[dict[str, np.ndarray], str, dict]:
    """The arrays, task and metadata of a problem archive; a :class:`ProblemError` for anything else."""
    where = f"problem file {str(path)!r}"
    if path.stat().st_size == 0:
        raise ProblemError(f"{where} is empty; {_FORMAT}")
    if not zipfile.is_zipfile(path):
        raise ProblemError(f"{where} is not a volumelab problem file (not a .npz archive); {_FORMAT}")
    try:
        with np.load(path, allow_pickle=False) as data:
            task = str(data["task"]) if "task" in data.files else "custom"
            supervised = task == "supervised" or "X_train" in data.files
            required = _SUPERVISED if supervised else _REQUIRED
            missing = [key for key in required if key not in data.files]
            if missing:
                raise ProblemError(f"{where} lacks array(s) {', '.join(missing)}; {_FORMAT}")
            optional = (("loss", "X_unlabeled", "unlabeled_mean", "unlabeled_scale", "unlabeled_inputs",
                         "unlabeled_features", "unlabeled_nu") if supervised else ("W_star",))
            arrays = {key: data[key] for key in (*required, *optional) if key in data.files}
            if supervised:
                task = "supervised"
            metadata = json.loads(str(data["metadata"])) if "metadata" in data.files else {}
    except ProblemError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ProblemError(f"{where} holds an object (non-numeric) array; {_FORMAT}") from exc
        raise ProblemError(f"{where} is damaged or not a volumelab problem file ({exc}); {_FORMAT}") from exc
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        # A truncated or corrupted archive fails in zipfile, zlib or numpy's header parser.
        raise ProblemError(f"{where} is damaged (truncated or corrupted archive: {exc}); {_FORMAT}") from exc
    if not isinstance(metadata, dict):
        raise ProblemError(f"{where}: its 'metadata' entry must be a JSON object")
    return arrays, task, metadata


def load_problem(path: str | Path):
    """Load a problem saved by :func:`save_problem` (or any ``.npz`` with the same arrays).

    A supervised problem's file (:meth:`SupervisedProblem.save`) gives a
    :class:`~volumelab.problems.supervised.SupervisedProblem`.

    Raises:
        ProblemError: the file is missing, empty, not an ``.npz`` archive, damaged, lacks
            an array, or holds arrays of the wrong shape, dtype or values (NaN/inf).
    """
    path = Path(path)
    if not path.is_file():
        raise ProblemError(f"problem file {str(path)!r} does not exist")
    arrays, task, metadata = _read_archive(path)
    try:
        if task == "supervised":
            from .supervised import SupervisedProblem, unlabeled_from_arrays

            loss = str(arrays.pop("loss")) if "loss" in arrays else "squared"
            unlabeled = unlabeled_from_arrays(arrays)
            return SupervisedProblem(**arrays, loss=loss, metadata={**metadata, "source": str(path)},
                                     unlabeled=unlabeled)
        return Problem(**arrays, task=task, metadata={**metadata, "source": str(path)})
    except ProblemError as exc:
        raise ProblemError(f"{path}: {exc}") from exc
