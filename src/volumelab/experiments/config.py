"""Declarative sweep configs: schema, validation and resolution into points.

A sweep file (YAML) describes one experiment::

    name: figure1
    claim: width                   # which paper claim the report checks (width | depth | none)
    x: model.width                 # swept field on the plots' x axis
    panel: model.activation        # optional: one subplot per value of this field
    problem: {task: sensing, rows: 5, cols: 5, rank: 1, measurements: 15, norm: 1.0}
    model:   {depth: 2, prior: gaussian, normalize: false}
    methods:
      gnc: {eps: 0.02, samples: 100000000}
      gd:  {step_rule: group_rmsprop, lr: 1.0e-4, init_scale: 1.0e-3, steps: 100000}
    grid:                          # cartesian product over any fields
      model.activation: [linear, tanh, leaky_relu]
      model.width: [5, 10, 20, 40, 80, 160]
    overrides:                     # per-value overrides, keyed by field then value
      model.depth: {5: {methods.gd.init_scale: 0.1}}
    rules:                         # overrides that need several fields to match
      - when: {model.activation: leaky_relu, model.depth: [9, 10]}
        set: {methods.gd.init_scale: 0.1}
    seeds: 8                       # or an explicit list
    scales:                        # named deviations from the base (= paper) settings
      quick:
        note: "eps 0.04 instead of 0.02"
        set: {methods.gnc.samples: 200000}

Resolution order for one grid point: base values, then the grid values, then the
base ``overrides`` and ``rules`` that match the point, then the scale's ``set``, then
the scale's ``overrides`` and ``rules``. Later steps win. Matching always looks at
the point *before* any override, so overrides never chain.

Every resolved point is validated; any error names the file and the field.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from .._counts import parse_count
from .. import _results_version
from ..errors import VolumelabError
from ..models import ACTIVATIONS, PRIORS, SCALINGS

__all__ = [
    "ConfigError",
    "GdMethodConfig",
    "GncMethodConfig",
    "ModelConfig",
    "ProblemConfig",
    "key_settings",
    "ResolvedPoint",
    "SweepConfig",
    "load_sweep",
    "method_types",
    "register_method_config",
    "resolve_points",
    "sweep_from_dict",
]

PAPER_SCALE = "paper"  # the base_scale of the packaged figure configs
#: The label of a config's base values when it does not name them (``base_scale``).
BASE_SCALE = "base"

#: An integer count that may be written ``1e6`` or ``2.0e5`` (see :func:`volumelab._counts.parse_count`).
Count = Annotated[int, BeforeValidator(parse_count)]


class ConfigError(VolumelabError):
    """A sweep config is invalid; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProblemConfig(_Strict):
    """The sensing / completion problem (see :func:`volumelab.make_problem`)."""

    task: Literal["sensing", "completion"] = "sensing"
    rows: Count = Field(5, ge=1)
    cols: Count = Field(5, ge=1)
    rank: Count = Field(1, ge=1)
    measurements: Count = Field(15, ge=1)
    norm: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _check_sizes(self) -> "ProblemConfig":
        if self.measurements >= self.rows * self.cols:
            raise ValueError(f"measurements = {self.measurements} must be below rows*cols = {self.rows * self.cols}")
        if self.rank > min(self.rows, self.cols):
            raise ValueError(f"rank {self.rank} exceeds min(rows, cols) = {min(self.rows, self.cols)}")
        return self


class ModelConfig(_Strict):
    """The factorization and its prior (see :class:`volumelab.FactorizationModel`)."""

    width: Count = Field(5, ge=1)
    depth: Count = Field(2, ge=1)
    activation: Literal[ACTIVATIONS] = "linear"  # type: ignore[valid-type]
    prior: Literal[PRIORS] = "gaussian"  # type: ignore[valid-type]
    scaling: Literal[SCALINGS] = "paper"  # type: ignore[valid-type]
    normalize: bool = False
    negative_slope: float = 0.2


class _MethodBase(_Strict):
    """Settings shared by all methods.

    ``model`` overrides model fields for this method only, e.g. ``{normalize: false}``
    for GD, which in the paper trains the plain factorization while G&C samples the
    normalized one.
    """

    model: dict[str, Any] = Field(default_factory=dict)

    #: Settings that decide where or in what pieces a run computes but never change its
    #: numbers; they are left out of the results store's key (``run_key``).
    execution_fields: ClassVar[frozenset[str]] = frozenset({"device"})

    @field_validator("model")
    @classmethod
    def _model_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(ModelConfig.model_fields))
        if unknown:
            raise ValueError(f"unknown model field(s) {', '.join(unknown)}; known: {', '.join(ModelConfig.model_fields)}")
        return value


class GncMethodConfig(_MethodBase):
    """Guess & Check: ``samples`` prior draws, accept ``L_train < eps``."""

    type: Literal["gnc"] = "gnc"
    eps: float = Field(gt=0)
    samples: Count = Field(ge=1)
    sampler: str = "auto"
    device: str = "auto"
    dtype: Literal["float32", "float64"] = "float32"
    batch_size: Count | None = Field(None, ge=1)

    # The sampler enters the key as what it resolves to (``auto`` may pick the same one as a name).
    execution_fields: ClassVar[frozenset[str]] = frozenset({"device", "batch_size", "sampler"})


class GdMethodConfig(_MethodBase):
    """Full-batch gradient descent from small initialization."""

    type: Literal["gd"] = "gd"
    lr: float = Field(gt=0)
    steps: Count = Field(ge=0)
    init_scale: float = Field(1e-3, gt=0)
    step_rule: Literal["gd", "group_rmsprop"] = "group_rmsprop"
    momentum: float = Field(0.0, ge=0, lt=1)
    device: str = "cpu"


_METHOD_CONFIGS: dict[str, type[BaseModel]] = {"gnc": GncMethodConfig, "gd": GdMethodConfig}


def register_method_config(type_name: str, config_class: type[BaseModel]) -> None:
    """Make a new method ``type`` usable in sweep files (its runner is registered in
    :mod:`volumelab.experiments.methods`)."""
    _METHOD_CONFIGS[type_name] = config_class


def method_types() -> list[str]:
    return sorted(_METHOD_CONFIGS)


def _validate_method(name: str, raw: Any) -> BaseModel:
    if isinstance(raw, BaseModel):
        return raw
    if not isinstance(raw, Mapping):
        raise ValueError(f"method {name!r} must be a mapping of settings, got {type(raw).__name__}")
    raw = dict(raw)
    type_name = raw.get("type", name)
    if type_name not in _METHOD_CONFIGS:
        raise ValueError(
            f"method {name!r} has unknown type {type_name!r}; set 'type' to one of {', '.join(method_types())}"
        )
    raw["type"] = type_name
    return _METHOD_CONFIGS[type_name].model_validate(raw)


class ScaleConfig(_Strict):
    """A named deviation from the base (paper) settings, applied last."""

    note: str = ""
    set: dict[str, Any] = Field(default_factory=dict)
    overrides: dict[str, dict[Any, dict[str, Any]]] = Field(default_factory=dict)
    rules: list["RuleConfig"] = Field(default_factory=list)


class RuleConfig(_Strict):
    """Set ``set`` wherever every field in ``when`` equals the value (or is in the list)."""

    when: dict[str, Any]
    set: dict[str, Any]

    @field_validator("when", "set")
    @classmethod
    def _not_empty(cls, value: dict) -> dict:
        if not value:
            raise ValueError("must not be empty")
        return value


ScaleConfig.model_rebuild()


class SweepConfig(_Strict):
    """One experiment: a problem, a model, methods, a grid, overrides, seeds, scales."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    title: str = ""
    description: str = ""
    figure: int | None = None
    claim: Literal["width", "depth", "none"] = "none"
    x: str | None = None
    x_log: bool | None = None
    panel: str | None = None
    problem: ProblemConfig = Field(default_factory=ProblemConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    methods: dict[str, Any] = Field(min_length=1)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    overrides: dict[str, dict[Any, dict[str, Any]]] = Field(default_factory=dict)
    rules: list[RuleConfig] = Field(default_factory=list)
    seeds: int | list[int] = 8
    scales: dict[str, ScaleConfig] = Field(default_factory=dict)
    base_scale: str = Field(BASE_SCALE, pattern=r"^[A-Za-z0-9_\-]+$")

    @model_validator(mode="after")
    def _base_scale_not_redefined(self) -> "SweepConfig":
        if self.base_scale in self.scales:
            raise ValueError(f"scale {self.base_scale!r} names the base values (base_scale); "
                             "it cannot also be defined under 'scales'")
        return self

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> dict[str, BaseModel]:
        if not isinstance(value, Mapping):
            raise ValueError("must map method names to their settings")
        out = {}
        for name, raw in value.items():
            if not isinstance(name, str) or not name.replace("_", "").isalnum():
                raise ValueError(f"method name {name!r} must be letters, digits and underscores")
            if name.endswith("prior") or name == "prior":
                raise ValueError(f"method name {name!r} is reserved for G&C's prior rows")
            try:
                out[name] = _validate_method(name, raw)
            except ValidationError as exc:
                raise ValueError(_describe(exc, prefix=f"methods.{name}")) from None
        return out

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if len(values) == 0:
                raise ValueError(f"grid field {key!r} has an empty list of values; give at least one")
            if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
                raise ValueError(f"grid field {key!r} repeats a value")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: int | list[int]) -> int | list[int]:
        if isinstance(value, int):
            if value < 1:
                raise ValueError("the number of seeds must be at least 1")
        else:
            if not value:
                raise ValueError("the list of seeds is empty")
            if any(s < 0 for s in value) or len(set(value)) != len(value):
                raise ValueError("seeds must be distinct non-negative integers")
        return value

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    @property
    def x_field(self) -> str | None:
        if self.x is not None:
            return self.x
        candidates = [k for k in self.grid if k != self.panel]
        return candidates[-1] if candidates else None

    def scale_names(self) -> list[str]:
        """The base values' label first, then the named scales."""
        return [self.base_scale] + list(self.scales)

    def scale_note(self, scale: str) -> str:
        spec = self.scales.get(scale)
        return spec.note if spec is not None else ""


# ------------------------------------------------------------------ resolution
@dataclass(frozen=True)
class ResolvedPoint:
    """One grid point with every setting resolved and validated.

    Attributes:
        index: Position in the grid (row-major over the grid's keys in file order).
        coords: ``{field path: value}`` of the grid fields at this point.
        problem: The problem settings.
        model: The model settings.
        methods: ``{method name: settings}``.
    """

    index: int
    coords: dict[str, Any]
    problem: ProblemConfig
    model: ModelConfig
    methods: dict[str, BaseModel]

    def as_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem.model_dump(),
            "model": self.model.model_dump(),
            "methods": {name: cfg.model_dump() for name, cfg in self.methods.items()},
        }


def key_settings(settings: BaseModel) -> dict[str, Any]:
    """A method's settings without its ``execution_fields`` (which never change a result)."""
    return settings.model_dump(exclude=set(getattr(settings, "execution_fields", ())))


def run_key(sweep: str, point: ResolvedPoint, method: str, seed: int, *,
            resolved: Mapping[str, Any] | None = None) -> str:
    """A stable identifier of one (point, seed, method) run.

    It hashes everything that changes the run's numbers and nothing that does not:
    the problem, the model as the method sees it, the method's settings less its
    ``execution_fields`` (device choice, batch size), what the settings resolve to on
    this machine (``resolved``: e.g. G&C's sampler, block size and device type), the
    seed, and the package's :data:`~volumelab.RESULTS_VERSION`. The sweep and method
    names identify the row.
    """
    settings = point.methods[method]
    payload = {
        "results_version": _results_version.RESULTS_VERSION,
        "sweep": sweep,
        "problem": point.problem.model_dump(),
        "model": {**point.model.model_dump(), **getattr(settings, "model", {})},
        "method": method,
        "settings": key_settings(settings),
        "resolved": dict(resolved or {}),
        "seed": seed,
    }
    text = json.dumps(payload, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    raise TypeError(f"not JSON serializable: {value!r}")


def _base_tree(config: SweepConfig) -> dict[str, Any]:
    return {
        "problem": config.problem.model_dump(),
        "model": config.model.model_dump(),
        "methods": {name: cfg.model_dump(exclude_unset=False) for name, cfg in config.methods.items()},
    }


def _check_path(tree: dict[str, Any], path: str, where: str) -> None:
    parts = path.split(".")
    node: Any = tree
    for depth, part in enumerate(parts):
        if len(parts) == 4 and depth == 3 and parts[0] == "methods" and parts[2] == "model":
            if part not in ModelConfig.model_fields:
                raise ConfigError(f"{where}: unknown field {path!r}; known model fields: "
                                  f"{', '.join(ModelConfig.model_fields)}")
            return
        if not isinstance(node, dict) or part not in node:
            known = sorted(node) if isinstance(node, dict) else []
            prefix = ".".join(parts[:depth]) or "the top level"
            hint = f"; known fields under {prefix}: {', '.join(known)}" if known else ""
            raise ConfigError(f"{where}: unknown field {path!r}{hint}")
        node = node[part]
    if isinstance(node, dict):
        raise ConfigError(f"{where}: {path!r} is a section, not a field; name one of its fields")


def _get(tree: dict[str, Any], path: str) -> Any:
    node = tree
    for part in path.split("."):
        node = node[part]
    return node


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = tree
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def _matches(actual: Any, wanted: Any) -> bool:
    options = wanted if isinstance(wanted, list) else [wanted]
    return any(actual == option or str(actual) == str(option) for option in options)


def _rules_of(overrides: dict[str, dict[Any, dict[str, Any]]], rules: list[RuleConfig]) -> list[RuleConfig]:
    expanded = [
        RuleConfig(when={path: value}, set=settings)
        for path, by_value in overrides.items()
        for value, settings in by_value.items()
    ]
    return expanded + list(rules)


def _check_rules(config: SweepConfig, tree: dict, rules: list[RuleConfig], where: str) -> None:
    for rule in rules:
        for path, wanted in rule.when.items():
            _check_path(tree, path, f"{where} (condition)")
            if path in config.grid:
                for option in wanted if isinstance(wanted, list) else [wanted]:
                    if not any(_matches(value, option) for value in config.grid[path]):
                        raise ConfigError(
                            f"{where}: override keyed by {path} = {option!r}, which is not one of the grid's "
                            f"values {config.grid[path]}"
                        )
        for path in rule.set:
            _check_path(tree, path, f"{where} (setting)")
            if path in config.grid:
                raise ConfigError(f"{where}: {path!r} is swept by the grid and cannot also be overridden")


def resolve_points(config: SweepConfig, scale: str | None = None, *, source: str = "<config>") -> list[ResolvedPoint]:
    """All grid points of ``config`` at ``scale`` (``None``: the base values), resolved and validated.

    Raises:
        ConfigError: naming ``source`` and the offending field.
    """
    scale = config.base_scale if scale is None else scale
    if scale != config.base_scale and scale not in config.scales:
        raise ConfigError(
            f"{source}: no scale {scale!r}; this config defines {', '.join(config.scale_names())}"
        )
    tree = _base_tree(config)
    for path in config.grid:
        _check_path(tree, path, f"{source}: grid")
    for name in ("x", "panel"):
        path = getattr(config, name)
        if path is not None and path not in config.grid:
            raise ConfigError(f"{source}: field {name!r} = {path!r} must be one of the grid's fields "
                              f"({', '.join(config.grid) or 'the grid is empty'})")
    base_rules = _rules_of(config.overrides, config.rules)
    _check_rules(config, tree, base_rules, f"{source}: overrides")
    scale_spec = config.scales.get(scale, ScaleConfig())
    for name, spec in config.scales.items():
        for path in spec.set:
            _check_path(tree, path, f"{source}: scales.{name}.set")
        _check_rules(config, tree, _rules_of(spec.overrides, spec.rules), f"{source}: scales.{name}.overrides")
    scale_rules = _rules_of(scale_spec.overrides, scale_spec.rules)

    keys = list(config.grid)
    points = []
    for index, values in enumerate(itertools.product(*(config.grid[k] for k in keys))):
        coords = dict(zip(keys, values))
        resolved = copy.deepcopy(tree)
        for path, value in coords.items():
            _set(resolved, path, value)
        at_point = copy.deepcopy(resolved)
        for rule in base_rules:
            if all(_matches(_get(at_point, p), w) for p, w in rule.when.items()):
                for path, value in rule.set.items():
                    _set(resolved, path, value)
        for path, value in scale_spec.set.items():
            _set(resolved, path, value)
        for rule in scale_rules:
            if all(_matches(_get(at_point, p), w) for p, w in rule.when.items()):
                for path, value in rule.set.items():
                    _set(resolved, path, value)
        where = ", ".join(f"{k}={v!r}" for k, v in coords.items()) or "the single point"
        try:
            problem = ProblemConfig.model_validate(resolved["problem"])
            model = ModelConfig.model_validate(resolved["model"])
            methods = {}
            for name, raw in resolved["methods"].items():
                try:
                    methods[name] = _validate_method(name, raw)
                    ModelConfig.model_validate({**resolved["model"], **methods[name].model})
                except ValidationError as exc:
                    raise ValueError(_describe(exc, prefix=f"methods.{name}")) from None
        except ValidationError as exc:
            raise ConfigError(f"{source}: at grid point {where} (scale {scale}): {_describe(exc)}") from None
        except ValueError as exc:
            raise ConfigError(f"{source}: at grid point {where} (scale {scale}): {exc}") from None
        points.append(ResolvedPoint(index, coords, problem, model, methods))
    return points


def _describe(exc: ValidationError, prefix: str = "") -> str:
    """Pydantic's errors as ``field 'a.b': message (got value)``, with field paths under ``prefix``."""
    parts = []
    for error in exc.errors():
        loc = ".".join([prefix] * bool(prefix) + [str(p) for p in error["loc"]]) or "(top level)"
        message = error["msg"]
        if error["type"] == "value_error":
            # Our own validators' messages, without pydantic's "Value error, " prefix.
            message = str(error.get("ctx", {}).get("error", message.removeprefix("Value error, ")))
            if message.startswith("field '"):  # already described (a method's own settings)
                parts.append(message)
                continue
        if error["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; see docs/experiments.md for the schema)"
        given = error.get("input")
        detail = f" (got {given!r})" if error["type"] not in ("extra_forbidden", "missing") and not isinstance(given, dict) else ""
        parts.append(f"field '{loc}': {message}{detail}")
    return "; ".join(parts)


def sweep_from_dict(data: Any, *, source: str = "<config>") -> SweepConfig:
    """Validate a parsed sweep (a dict) and check that every scale resolves."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a sweep config must be a mapping at the top level, got {type(data).__name__}")
    try:
        config = SweepConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
    for scale in config.scale_names():
        resolve_points(config, scale, source=source)
    return config


def load_sweep(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML file.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid (the message names the
            file and the field).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep config {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8); a sweep config is a YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    return sweep_from_dict(data, source=str(path))


def describe_point(point: ResolvedPoint) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in point.coords.items())

