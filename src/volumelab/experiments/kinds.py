"""Problem and model kinds: the tagged unions ``problem: {kind: ...}`` and ``model: {kind: ...}``.

Each kind registers its settings class (a pydantic model whose ``kind`` field names
it) and one build function; the sweep code builds every problem and model through
them, so a new kind (a supervised problem, an MLP) is one more registration:

* problems: ``sensing`` and ``completion`` (generated from a seed; the default kind is
  ``sensing``, and ``task:`` is still read as ``kind:``), ``tensor-sensing`` and
  ``tensor-completion`` (order-N, ``dims: [4, 4, 4]``), ``supervised`` (a data set
  split from a seed, :func:`volumelab.problems.make_supervised`) and ``file`` (a ``.npz``
  problem, its path relative to the sweep file's folder);
* models: ``factorization`` (the default), ``cp`` (a CP tensor factorization), ``mlp``, ``diagonal`` and ``linear_classifier``
  (a deep linear classifier, fully connected or diagonal by its ``architecture`` field).

A model family's kind is generated from the family itself (:func:`family_kind`): its
settings are the dataclass's :func:`~volumelab.models.layers.setting` fields with the
family's defaults and choices, and its build fills the fields the problem's shape gives
(:meth:`~volumelab.models.LayeredModel.shape_settings`). ``linear_classifier`` is not a
family but a choice between two, and keeps its own settings.

A problem kind's ``shape`` is what the model is built for: ``(rows, cols)`` of a matrix
problem, ``(1, features)`` (one output, the input dimension) of a supervised one.

A kind's settings enter the results store's key as the migration table of
:mod:`volumelab.experiments.keys` says; a kind whose settings stand for something else (a
file problem: its contents) gives its own ``key``.
"""

from __future__ import annotations

import hashlib
import math
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationInfo, create_model, field_validator, model_validator

from ..models import DIAGONAL_FORMS, PRIORS, CPModel, DiagonalNetwork, FactorizationModel, MLPModel, register_family
from ..models.layers import setting_fields
from ..problems.supervised import DATASETS, INPUT_DISTRIBUTIONS, LOSSES, MNIST1D_ARGS, checked_classes, checked_inputs
from ._schema import Count, Strict
from .keys import canonical

__all__ = [
    "DEFAULT_MODEL_KIND",
    "DEFAULT_PROBLEM_KIND",
    "FactorizationConfig",
    "FileProblemConfig",
    "GeneratedProblemConfig",
    "CPConfig",
    "DiagonalConfig",
    "LinearClassifierConfig",
    "MLPConfig",
    "SupervisedProblemConfig",
    "TensorProblemConfig",
    "ModelKind",
    "ProblemKind",
    "build_model",
    "build_problem",
    "family_kind",
    "model_fit",
    "model_key",
    "model_kind",
    "model_size",
    "problem_key",
    "problem_kind",
    "problem_shape",
    "register_model_kind",
    "register_problem_kind",
    "validate_model",
    "validate_problem",
]

DEFAULT_PROBLEM_KIND = "sensing"
DEFAULT_MODEL_KIND = "factorization"


@dataclass(frozen=True)
class ProblemKind:
    """One kind of ``problem:`` in a sweep.

    Attributes:
        name: The ``kind`` value.
        settings: Its pydantic settings class.
        build: ``(settings, seed) -> Problem``; ``seed`` is ``None`` for an unseeded kind.
        shape: ``settings -> shape`` of the measured array: ``(rows, cols)`` of a matrix, ``dims`` of a tensor
            (for building the model).
        key: ``settings -> dict`` entering the run key, for settings that stand for something else (a file's
            contents); default: the settings by the migration table (:func:`volumelab.experiments.keys.canonical`).
        seeded: The problem is made from a seed (the run's, or ``problem_seed``); a fixed
            problem (a file) is not.
    """

    name: str
    settings: type[BaseModel]
    build: Callable[[Any, int | None], Any]
    shape: Callable[[Any], tuple[int, ...]]
    key: Callable[[Any], dict] | None = None
    seeded: bool = True


@dataclass(frozen=True)
class ModelKind:
    """One kind of ``model:`` in a sweep.

    Attributes:
        name: The ``kind`` value.
        settings: Its pydantic settings class.
        build: ``(settings, (rows, cols)) -> model``.
        size: ``settings -> float``: relative cost of one unit of work (scheduling only).
        key: ``settings -> dict`` entering the run key, for settings that stand for something else (a file's
            contents); default: the settings by the migration table (:func:`volumelab.experiments.keys.canonical`).
        orders: The problem orders (``len(shape)``) the model is built for; ``None``: any.
        family: The model family it builds, when it is one (:func:`family_kind`); registering the kind
            registers the family too (the command line's ``--model``).
    """

    name: str
    settings: type[BaseModel]
    build: Callable[[Any, tuple[int, int]], Any]
    size: Callable[[Any], float] = lambda settings: 1.0
    key: Callable[[Any], dict] | None = None
    orders: tuple[int, ...] | None = (2,)
    family: type | None = None


_PROBLEMS: dict[str, ProblemKind] = {}
_MODELS: dict[str, ModelKind] = {}


def register_problem_kind(kind: ProblemKind) -> ProblemKind:
    _PROBLEMS[kind.name] = kind
    return kind


def register_model_kind(kind: ModelKind) -> ModelKind:
    _MODELS[kind.name] = kind
    if kind.family is not None:
        register_family(kind.family)
    return kind


class FamilySettings(Strict):
    """Settings of a model kind generated from a family's dataclass (:func:`family_kind`): its
    :func:`~volumelab.models.layers.setting` fields, checked by building the family on its
    ``example_shape``, so the family's own validation applies when the sweep file is read."""

    family_class: ClassVar[type | None] = None

    @model_validator(mode="after")
    def _family_accepts(self) -> "FamilySettings":
        family = self.family_class
        family(**family.shape_settings(family.example_shape), **self.model_dump(exclude={"kind"}))
        return self


def family_kind(family: type, *, name: str | None = None, size: Callable[[Any], float] | None = None,
                key: Callable[[Any], dict] | None = None) -> ModelKind:
    """The model kind of a family: its settings generated from the family's ``setting`` fields (their
    defaults, choices and minimums), and its build from the problem's shape (``shape_settings``).

    Args:
        family: The family's dataclass (a :class:`~volumelab.models.LayeredModel`).
        name: The ``kind`` value; default the family's ``family`` name.
        size: ``settings -> float``: relative cost of one unit of work (scheduling only).
        key: What of the settings enters the run key; default all of them.

    The problem orders it is built for are the family's ``problem_orders``.
    """
    name = name or family.family
    hints = typing.get_type_hints(family)
    fields: dict[str, Any] = {"kind": (Literal[name], name)}  # type: ignore[valid-type]
    for item in setting_fields(family).values():
        choices, minimum = item.metadata.get("choices"), item.metadata.get("minimum")
        if choices:
            fields[item.name] = (Literal[tuple(choices)], item.default)  # type: ignore[valid-type]
        elif hints[item.name] is int:
            fields[item.name] = (Count, Field(item.default, ge=minimum) if minimum is not None else item.default)
        else:
            fields[item.name] = (hints[item.name], item.default)
    title = "".join(part.capitalize() for part in name.split("_"))
    settings = create_model(f"{title}Config", __base__=FamilySettings, __doc__=(
        f"The {name} model and its prior (the settings of :class:`{family.__module__}.{family.__name__}`)."),
        **fields)
    settings.family_class = family

    def build(values, shape):
        return family(**family.shape_settings(shape), **values.model_dump(exclude={"kind"}))

    return ModelKind(name, settings, build, size=size or (lambda values: 1.0), key=key, orders=family.problem_orders,
                     family=family)


def _kind_of(raw: Mapping[str, Any], default: str, kinds: Mapping[str, Any], what: str, alias: str | None = None):
    name = raw.get("kind", raw.get(alias, default) if alias else default)
    if name not in kinds:
        raise ValueError(f"unknown {what} kind {name!r}; known: {', '.join(sorted(kinds))}")
    return kinds[name]


def validate_problem(raw: Any, *, base_dir: str | Path | None = None) -> BaseModel:
    """The settings of a ``problem:`` mapping, by its ``kind`` (default ``sensing``).

    Args:
        raw: The mapping (or already validated settings, returned as they are).
        base_dir: Folder that relative file paths are relative to (the sweep file's).
    """
    if isinstance(raw, BaseModel):
        return raw
    if not isinstance(raw, Mapping):
        raise ValueError(f"the problem must be a mapping of settings, got {type(raw).__name__}")
    kind = _kind_of(raw, DEFAULT_PROBLEM_KIND, _PROBLEMS, "problem", alias="task")
    return kind.settings.model_validate(dict(raw), context={"base_dir": base_dir})


def validate_model(raw: Any) -> BaseModel:
    """The settings of a ``model:`` mapping, by its ``kind`` (default ``factorization``)."""
    if isinstance(raw, BaseModel):
        return raw
    if not isinstance(raw, Mapping):
        raise ValueError(f"the model must be a mapping of settings, got {type(raw).__name__}")
    return _kind_of(raw, DEFAULT_MODEL_KIND, _MODELS, "model").settings.model_validate(dict(raw))


def problem_kind(settings: BaseModel) -> ProblemKind:
    return _PROBLEMS[settings.kind]


def model_kind(settings: BaseModel) -> ModelKind:
    return _MODELS[settings.kind]


def build_problem(settings: BaseModel, seed: int | None):
    """The problem of ``settings`` made from ``seed`` (ignored by unseeded kinds)."""
    kind = problem_kind(settings)
    return kind.build(settings, seed if kind.seeded else None)


def problem_shape(settings: BaseModel) -> tuple[int, ...]:
    return problem_kind(settings).shape(settings)


def problem_key(settings: BaseModel) -> dict:
    """The problem as it enters run keys: its kind's ``key`` (a file problem: its contents) or its settings by
    the migration table (:mod:`volumelab.experiments.keys`)."""
    kind = problem_kind(settings)
    return kind.key(settings) if kind.key is not None else canonical("problem", kind.name, settings.model_dump())


def build_model(settings: BaseModel, shape: tuple[int, int]):
    return model_kind(settings).build(settings, shape)


def model_fit(model: BaseModel, problem: BaseModel) -> str | None:
    """Why a model of settings ``model`` cannot be built for the problem of settings ``problem``, or ``None``."""
    orders = model_kind(model).orders
    shape = tuple(problem_shape(problem))
    if orders is not None and len(shape) not in orders:
        return (f"a {model.kind!r} model is built for a matrix problem, but this problem measures an order-"
                f"{len(shape)} tensor ({'x'.join(map(str, shape))}); use model kind 'cp'")
    return None


def model_key(settings: BaseModel) -> dict:
    """The model as it enters run keys: its kind's ``key`` or its settings by the migration table."""
    kind = model_kind(settings)
    return kind.key(settings) if kind.key is not None else canonical("model", kind.name, settings.model_dump())


def model_size(settings: BaseModel) -> float:
    return float(model_kind(settings).size(settings))


# ------------------------------------------------------------------ sensing, completion
class GeneratedProblemConfig(Strict):
    """A generated sensing / completion problem (see :func:`volumelab.make_problem`)."""

    kind: Literal["sensing", "completion"] = DEFAULT_PROBLEM_KIND
    rows: Count = Field(5, ge=1)
    cols: Count = Field(5, ge=1)
    rank: Count = Field(1, ge=1)
    measurements: Count = Field(15, ge=1)
    norm: float = Field(1.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _task_is_kind(cls, data: Any) -> Any:
        """``task:`` (the name before kinds) is read as ``kind:``."""
        if isinstance(data, Mapping) and "task" in data:
            data = dict(data)
            task = data.pop("task")
            if data.setdefault("kind", task) != task:
                raise ValueError(f"task {task!r} and kind {data['kind']!r} disagree; give kind only")
        return data

    @model_validator(mode="after")
    def _check_sizes(self) -> "GeneratedProblemConfig":
        if self.measurements >= self.rows * self.cols:
            raise ValueError(f"measurements = {self.measurements} must be below rows*cols = {self.rows * self.cols}")
        if self.rank > min(self.rows, self.cols):
            raise ValueError(f"rank {self.rank} exceeds min(rows, cols) = {min(self.rows, self.cols)}")
        return self


def _build_generated(settings: GeneratedProblemConfig, seed: int | None):
    from ..problems import make_problem

    return make_problem(settings.kind, settings.rows, settings.cols, settings.rank, settings.measurements,
                        seed=seed, norm=settings.norm)


for _name in ("sensing", "completion"):
    register_problem_kind(ProblemKind(_name, GeneratedProblemConfig, _build_generated,
                                      shape=lambda settings: (settings.rows, settings.cols)))


# ------------------------------------------------------------------ tensor sensing, completion
class TensorProblemConfig(Strict):
    """A generated order-N tensor sensing / completion problem (see :func:`volumelab.problems.make_tensor_problem`)."""

    kind: Literal["tensor-sensing", "tensor-completion"] = "tensor-sensing"
    dims: list[Count] = Field(default_factory=lambda: [4, 4, 4])
    rank: Count = Field(1, ge=1)
    measurements: Count = Field(16, ge=1)
    norm: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _check_sizes(self) -> "TensorProblemConfig":
        if len(self.dims) < 2 or any(size < 1 for size in self.dims):
            raise ValueError(f"dims must give at least two positive sizes, got {self.dims}")
        entries = math.prod(self.dims)
        if self.measurements >= entries:
            raise ValueError(f"measurements = {self.measurements} must be below the tensor's {entries} entries")
        if len(self.dims) == 2 and self.rank > min(self.dims):
            raise ValueError(f"rank {self.rank} exceeds the smallest side of the {'x'.join(map(str, self.dims))} "
                             f"tensor ({min(self.dims)})")
        return self


def _build_tensor(settings: TensorProblemConfig, seed: int | None):
    from ..problems import make_tensor_problem

    return make_tensor_problem(settings.kind, tuple(settings.dims), settings.rank, settings.measurements,
                               seed=seed, norm=settings.norm)


for _name in ("tensor-sensing", "tensor-completion"):
    register_problem_kind(ProblemKind(_name, TensorProblemConfig, _build_tensor,
                                      shape=lambda settings: tuple(settings.dims)))


# ------------------------------------------------------------------ file
_LOADED: dict[tuple[str, int, int], tuple[Any, str]] = {}


def _load(path: str) -> tuple[Any, str]:
    """``(problem, sha256 of the file)``, cached while the file is unchanged."""
    from ..problems import load_problem

    stat = os.stat(path)
    marker = (path, stat.st_mtime_ns, stat.st_size)
    if marker not in _LOADED:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        _LOADED[marker] = (load_problem(path), digest)
    return _LOADED[marker]


class FileProblemConfig(Strict):
    """A problem stored as ``.npz`` (``volumelab problem make`` or :func:`volumelab.save_problem`).

    ``path`` is relative to the sweep file's folder; it is stored absolute. Every seed
    uses this one problem; the run key holds the file's contents (its SHA-256), not its path.
    """

    kind: Literal["file"] = "file"
    path: str

    @field_validator("path")
    @classmethod
    def _existing_problem(cls, value: str, info: ValidationInfo) -> str:
        path = Path(value).expanduser()
        base_dir = (info.context or {}).get("base_dir")
        if not path.is_absolute():
            path = Path(base_dir or ".") / path
        path = path.resolve()
        if not path.is_file():
            raise ValueError(f"problem file {str(path)!r} does not exist")
        _load(str(path))  # a damaged file is an error here, naming the field
        return str(path)


def _shape_of(problem) -> tuple[int, int]:
    """What a model is built for: ``(rows, cols)`` of a matrix problem, ``(1, features)`` of a supervised one."""
    if problem.task == "supervised":
        return (1, problem.num_features)
    return problem.shape


register_problem_kind(ProblemKind(
    "file", FileProblemConfig, lambda settings, seed: _load(settings.path)[0],
    shape=lambda settings: _shape_of(_load(settings.path)[0]),
    key=lambda settings: {"kind": "file", "sha256": _load(settings.path)[1]}, seeded=False))


# ------------------------------------------------------------------ factorization, cp
FACTORIZATION = register_model_kind(family_kind(
    FactorizationModel, name=DEFAULT_MODEL_KIND,
    # A rough relative cost per unit of work, for scheduling the most expensive tasks first.
    size=lambda s: s.width * s.width * max(1, s.depth - 1) + 10 * s.width))
FactorizationConfig = FACTORIZATION.settings

CP = register_model_kind(family_kind(
    CPModel, size=lambda s: s.width * (s.width * max(0, s.depth - 1) + 10) * 3))
CPConfig = CP.settings


# ------------------------------------------------------------------ supervised
#: Input dimension of the finite data sets (digits: 8 x 8 pixels; MNIST-1D: 40 samples of a signal).
BUNDLED_FEATURES = {"digits": 64, "breast_cancer": 30, "diabetes": 10, "mnist1d": MNIST1D_ARGS["final_seq_length"]}


class SupervisedProblemConfig(Strict):
    """A supervised data set, split and standardized from the seed (see :func:`volumelab.problems.make_supervised`).

    ``classes: [A, B]`` picks the two classes of a data set with digit classes (digits, mnist1d; A is labelled
    -1, B +1); left out, it is the data set's default pair (digits 3, 8; mnist1d 0, 1), which the settings then
    hold. Any other data set takes no classes.

    ``inputs`` is the teacher's input distribution (``gaussian``, the default; ``sphere``; ``student_t`` with
    ``nu > 2`` degrees of freedom): each has covariance I_d, and only ``student_t`` takes ``nu``.
    """

    kind: Literal["supervised"] = "supervised"
    data: Literal[DATASETS] = "teacher"  # type: ignore[valid-type]
    train: Count = Field(100, ge=1)
    test: Count | None = Field(None, ge=1)
    loss: Literal[LOSSES] | None = None  # type: ignore[valid-type]
    features: Count = Field(10, ge=1)
    teacher_width: Count = Field(4, ge=1)
    noise: float = Field(0.0, ge=0)
    nonzero: Count = Field(3, ge=1)
    classes: tuple[int, int] | None = None
    inputs: Literal[INPUT_DISTRIBUTIONS] = "gaussian"  # type: ignore[valid-type]
    nu: float | None = None

    @model_validator(mode="after")
    def _input_distribution(self) -> "SupervisedProblemConfig":
        """``nu`` only with (and required by) ``student_t`` inputs, above 2; non-Gaussian inputs only for the teacher."""
        checked_inputs(self.data, self.inputs, self.nu)
        return self

    @model_validator(mode="before")
    @classmethod
    def _data_set_classes(cls, raw: Any) -> Any:
        """The data set's default pair when ``classes`` is left out; bad classes an error naming the field."""
        if not isinstance(raw, Mapping) or not isinstance(raw.get("data", "teacher"), str):
            return raw
        return {**raw, "classes": checked_classes(raw.get("data", "teacher"), raw.get("classes"))}


def _build_supervised(settings: SupervisedProblemConfig, seed: int | None):
    from ..problems import make_supervised

    return make_supervised(settings.data, settings.train, seed=seed, loss=settings.loss, num_test=settings.test,
                           num_features=settings.features, teacher_width=settings.teacher_width, noise=settings.noise,
                           teacher_nonzero=settings.nonzero, classes=settings.classes, inputs=settings.inputs,
                           nu=settings.nu)


register_problem_kind(ProblemKind(
    "supervised", SupervisedProblemConfig, _build_supervised,
    shape=lambda settings: (1, BUNDLED_FEATURES.get(settings.data, settings.features))))


# ------------------------------------------------------------------ mlp
MLP = register_model_kind(family_kind(
    MLPModel, size=lambda s: s.width * s.width * max(1, s.depth - 1) + 100 * s.width))
MLPConfig = MLP.settings


# ------------------------------------------------------------------ diagonal
DIAGONAL = register_model_kind(family_kind(DiagonalNetwork, size=lambda s: 10.0 * s.depth))
DiagonalConfig = DIAGONAL.settings


# ------------------------------------------------------------------ linear classifiers
class LinearClassifierConfig(Strict):
    """A deep linear classifier ``f(x) = <w, x>`` under one of two parametrizations, chosen by ``architecture``.

    ``fully_connected``: a deep linear network (an MLP with the linear activation) of hidden
    ``width`` (default: the input dimension); ``diagonal``: a deep diagonal network of the
    given ``form`` (see :class:`volumelab.models.DiagonalNetwork`). Both are the same
    function class, so a sweep over ``architecture`` isolates what the parametrization
    does. ``width`` is read by the fully connected net only, ``form`` by the diagonal one
    (a grid over ``architecture`` sets both).
    """

    kind: Literal["linear_classifier"] = "linear_classifier"
    architecture: Literal["fully_connected", "diagonal"] = "diagonal"
    depth: Count = Field(2, ge=1)
    width: Count | None = Field(None, ge=1)
    form: Literal[DIAGONAL_FORMS] = "difference"  # type: ignore[valid-type]
    prior: Literal[PRIORS] = "gaussian"  # type: ignore[valid-type]


def _build_linear_classifier(settings: LinearClassifierConfig, shape: tuple[int, int]):
    from ..models import DiagonalNetwork, MLPModel

    features = shape[1]
    if settings.architecture == "diagonal":
        return DiagonalNetwork(features, settings.depth, settings.form, settings.prior)
    return MLPModel(features, settings.width or features, settings.depth, "linear", prior=settings.prior)


register_model_kind(ModelKind(
    "linear_classifier", LinearClassifierConfig, _build_linear_classifier,
    size=lambda s: 10.0 * s.depth if s.architecture == "diagonal" else (s.width or 10) ** 2 * s.depth))
