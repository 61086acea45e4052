"""Declarative sweep configs: schema, validation and resolution into points.

A sweep file (YAML) describes one experiment (docs/experiments.md has a full example)::

    name: my_sweep
    claim: width                   # which claim the report checks: a registered study (width | depth |
                                   # ngd-invariance | ... | tensor-depth) or none
    verdict:                       # optional: the pre-registered decision's numbers, where they differ
      rise: {minimal_effect: 0.05, min_seeds: 8}   # from the study's declaration (endpoint: fields)
    x: model.width                 # swept field on the plots' x axis
    panel: model.activation        # optional: one subplot per value of this field (or of a list of fields:
                                   # [problem.rank, model.normalize] gives one per combination)
    problem: {kind: sensing, rows: 5, cols: 5, rank: 1, measurements: 15, norm: 1.0}
    model:   {kind: factorization, depth: 2, prior: gaussian, normalize: false}
    problem_seed: 0                # optional: every seed's problem is made from seed 0
    stream: 0                      # optional: replicate stream; K > 0 redraws everything a seed
                                   # makes (problems, splits, draws, inits); `volumelab run --stream`
    methods:                       # name: settings; ``type`` (a registered method) defaults to the name
      <name>: {<the optimizer's fields>, <its budget>, model: {<model overrides>}}
    grid:                          # cartesian product over any fields
      model.activation: [linear, tanh, leaky_relu]
      model.width: [5, 10, 20, 40, 80, 160]
    overrides:                     # per-value overrides, keyed by field then value
      model.width: {160: {methods.<name>.<field>: <value>}}
    rules:                         # overrides that need several fields to match
      - when: {model.activation: leaky_relu, model.width: [80, 160]}
        set: {methods.<name>.<field>: <value>}
    seeds: 8                       # or an explicit list
    scales:                        # named deviations from the base (= paper) settings
      quick:
        note: "fewer draws"
        set: {methods.<name>.<field>: <value>}

Resolution order for one grid point: base values, then the grid values, then the
base ``overrides`` and ``rules`` that match the point, then the scale's ``set``, then
the scale's ``overrides`` and ``rules``. Later steps win. Matching always looks at
the point *before* any override, so overrides never chain.

``problem`` and ``model`` are tagged unions (:mod:`volumelab.experiments.kinds`):
``kind: sensing | completion | file`` (default ``sensing``) and ``kind: factorization``
(the default). A method's settings are the fields of its optimizer plus its budget
(:mod:`volumelab.experiments.methods`).

Every resolved point is validated; any error names the file and the field.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

from .. import _results_version
from ._schema import ConfigError, Count, Strict
from .kinds import (
    FactorizationConfig,
    FileProblemConfig,
    GeneratedProblemConfig,
    model_fit,
    model_key,
    problem_key,
    problem_kind,
    validate_model,
    validate_problem,
)
from .keys import KEY_FORMAT, digest
from .methods import MethodSettings, extra_row_types, get_method, method_types

__all__ = [
    "ConfigError",
    "Count",
    "FactorizationConfig",
    "FileProblemConfig",
    "GeneratedProblemConfig",
    "MethodSettings",
    "ModelConfig",
    "ProblemConfig",
    "apply_overrides",
    "key_settings",
    "legacy_run_key",
    "ResolvedPoint",
    "SweepConfig",
    "load_sweep",
    "method_types",
    "resolve_points",
    "sweep_from_dict",
]

PAPER_SCALE = "paper"  # the base_scale of the packaged figure configs
#: The label of a config's base values when it does not name them (``base_scale``).
BASE_SCALE = "base"

#: The default kinds' settings under their names from before kinds.
ProblemConfig = GeneratedProblemConfig
ModelConfig = FactorizationConfig

_Strict = Strict

#: Paths read under another name: ``problem.task`` is the problem's ``kind`` since kinds exist.
_PATH_ALIASES = {"problem.task": "problem.kind"}


def _validate_method(name: str, raw: Any) -> MethodSettings:
    if isinstance(raw, BaseModel):
        return raw
    if not isinstance(raw, Mapping):
        raise ValueError(f"method {name!r} must be a mapping of settings, got {type(raw).__name__}")
    raw = dict(raw)
    type_name = raw.get("type", name)
    try:
        spec = get_method(type_name)
    except KeyError:
        raise ValueError(
            f"method {name!r} has unknown type {type_name!r}; set 'type' to one of {', '.join(method_types())}"
        ) from None
    raw["type"] = type_name
    return spec.settings.model_validate(raw)


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
    #: The claim its report judges: a registered study's name (:func:`volumelab.evidence.get_study`) or ``none``.
    claim: str = "none"
    #: The pre-registered decision's numbers, where they differ from the study's declaration:
    #: ``{endpoint: {minimal_effect | margin | target | min_seeds: value}}``.
    verdict: dict[str, dict[str, float]] = Field(default_factory=dict)
    x: str | None = None
    x_log: bool | None = None
    panel: str | list[str] | None = None
    problem: Any = Field(default_factory=lambda: validate_problem({}))
    model: Any = Field(default_factory=lambda: validate_model({}))
    problem_seed: int | None = Field(None, ge=0)
    #: The replicate stream (:func:`volumelab._rng.stream_seed`): 0 is the experiment as
    #: it always was; another value redraws every random stream of every seed.
    stream: int = Field(0, ge=0, strict=True)
    methods: dict[str, Any] = Field(min_length=1)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    overrides: dict[str, dict[Any, dict[str, Any]]] = Field(default_factory=dict)
    rules: list[RuleConfig] = Field(default_factory=list)
    seeds: int | list[int] = 8
    scales: dict[str, ScaleConfig] = Field(default_factory=dict)
    base_scale: str = Field(BASE_SCALE, pattern=r"^[A-Za-z0-9_\-]+$")

    #: The folder relative problem paths are relative to (the sweep file's).
    _base_dir: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _base_scale_not_redefined(self, info: ValidationInfo) -> "SweepConfig":
        if self.base_scale in self.scales:
            raise ValueError(f"scale {self.base_scale!r} names the base values (base_scale); "
                             "it cannot also be defined under 'scales'")
        self._base_dir = (info.context or {}).get("base_dir")
        return self

    @model_validator(mode="after")
    def _claim_is_a_study(self) -> "SweepConfig":
        from ..evidence import registered_studies

        if self.claim != "none":
            studies = registered_studies()
            if self.claim not in studies:
                raise ValueError(f"claim {self.claim!r} is not a registered study; expected one of "
                                 f"{', '.join(sorted(studies))} or none")
        elif self.verdict:
            raise ValueError("verdict: needs a claim (a registered study) to apply to")
        self.study()  # an unknown endpoint or field in verdict: is an error now, not at report time
        return self

    def study(self):
        """The :class:`~volumelab.evidence.Study` that judges this sweep, with its ``verdict:`` numbers
        (``None`` for ``claim: none``)."""
        from ..evidence import get_study

        study = get_study(self.claim) if self.claim != "none" else None
        if study is None and self.verdict:
            raise ValueError(f"claim {self.claim!r} has no study declaration to apply verdict: to")
        return study.with_rules(self.verdict) if study is not None else None

    @field_validator("problem", mode="before")
    @classmethod
    def _problem(cls, value: Any, info: ValidationInfo) -> BaseModel:
        return validate_problem(value, base_dir=(info.context or {}).get("base_dir"))

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> BaseModel:
        return validate_model(value)

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> dict[str, BaseModel]:
        if not isinstance(value, Mapping):
            raise ValueError("must map method names to their settings")
        out = {}
        for name, raw in value.items():
            if not isinstance(name, str) or not name.replace("_", "").isalnum():
                raise ValueError(f"method name {name!r} must be letters, digits and underscores")
            for extra in sorted(extra_row_types()):
                if name == extra or name.endswith(f"_{extra}"):
                    raise ValueError(f"method name {name!r} is reserved: methods store their {extra!r} rows "
                                     f"under names like it")
            try:
                out[name] = _validate_method(name, raw)
            except ValidationError as exc:
                raise ValueError(_describe(exc, prefix=f"methods.{name}")) from None
        taken = {}
        for name, settings in out.items():
            for extra in get_method(settings.type).extra_rows:
                row = extra.row_name(name)
                if row in out or row in taken:
                    raise ValueError(f"method {name!r} stores {extra.type!r} rows named {row!r}, which is also "
                                     f"the name of {'method' if row in out else 'the rows of'} "
                                     f"{row if row in out else taken[row]!r}; rename a method")
                taken[row] = name
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
        candidates = [k for k in self.grid if k not in self.panel_fields]
        return candidates[-1] if candidates else None

    @property
    def panel_fields(self) -> list[str]:
        """The grid fields whose values (or combinations of values) make the panels."""
        if self.panel is None:
            return []
        return [self.panel] if isinstance(self.panel, str) else list(self.panel)

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
        problem: The problem settings (one of the problem kinds).
        model: The model settings (one of the model kinds).
        methods: ``{method name: settings}``.
        problem_seed: The seed every run's problem is made from; ``None``: each run's own seed.
    """

    index: int
    coords: dict[str, Any]
    problem: BaseModel
    model: BaseModel
    methods: dict[str, MethodSettings]
    problem_seed: int | None = None

    def model_for(self, method: str) -> BaseModel:
        """The model as ``method`` sees it: the point's, with the method's ``model`` overrides."""
        overrides = self.methods[method].model
        if not overrides:
            return self.model
        return validate_model({**self.model.model_dump(), **overrides})

    def as_dict(self) -> dict[str, Any]:
        return {
            "problem": self.problem.model_dump(),
            "model": self.model.model_dump(),
            "problem_seed": self.problem_seed,
            "methods": {name: cfg.model_dump() for name, cfg in self.methods.items()},
        }


def key_settings(settings: BaseModel, *, observers: bool = False) -> dict[str, Any]:
    """A method's settings less its ``execution_fields`` (which never change a result) and observer options, by
    the migration table (see :meth:`MethodSettings.key_settings` and :mod:`volumelab.experiments.keys`)."""
    if isinstance(settings, MethodSettings):
        return settings.key_settings(observers=observers)
    return settings.model_dump()


def _key_payload(point: ResolvedPoint, method: str, seed: int, resolved: Mapping[str, Any] | None,
                 stream: int, observers: bool = False) -> dict[str, Any]:
    payload = {
        "results_version": _results_version.RESULTS_VERSION,
        "problem": problem_key(point.problem),
        "model": model_key(point.model_for(method)),
        "settings": key_settings(point.methods[method], observers=observers),
        "resolved": dict(resolved or {}),
        "seed": seed,
    }
    if point.problem_seed is not None:
        payload["problem_seed"] = point.problem_seed
    if stream != 0:
        payload["stream"] = stream
    return payload


def run_key(point: ResolvedPoint, method: str, seed: int, *, resolved: Mapping[str, Any] | None = None,
            stream: int = 0) -> str:
    """A stable identifier of one (point, seed, method) run (:mod:`volumelab.experiments.keys`).

    It hashes everything that changes the run's numbers and nothing that does not: the
    problem (as its kind keys it: a file problem by its contents), the seed its problem is
    made from where that is not the run's seed (``problem_seed``), the model as the method
    sees it, the method's type and settings less its ``execution_fields`` (device choice,
    batch size), what the settings resolve to on this machine (``resolved``: e.g. the
    device type, or a sampler's choice and block size), the seed, the replicate ``stream``
    (only when it is not 0) and the package's :data:`~volumelab.RESULTS_VERSION`, each by
    the migration table. The sweep and method names identify the row; they are not in the key.
    """
    return digest({"key_format": KEY_FORMAT, **_key_payload(point, method, seed, resolved, stream)})


def legacy_run_key(sweep: str, point: ResolvedPoint, method: str, seed: int, *,
                   resolved: Mapping[str, Any] | None = None, stream: int = 0) -> str:
    """The key the same run had in key format 1 (with the sweep and method names, and the observer options):
    what a store written before format 2 holds it under (:meth:`~volumelab.experiments.store.ResultsStore.migrate_keys` renames it)."""
    return digest({"sweep": sweep, "method": method,
                   **_key_payload(point, method, seed, resolved, stream, observers=True)})


def _base_tree(config: SweepConfig) -> dict[str, Any]:
    return {
        "problem": config.problem.model_dump(),
        "model": config.model.model_dump(),
        "problem_seed": config.problem_seed,
        "methods": {name: cfg.model_dump(exclude_unset=False) for name, cfg in config.methods.items()},
    }


def canonical_path(path: str) -> str:
    """The path a grid, rule or scale path names (``problem.task`` is ``problem.kind``)."""
    return _PATH_ALIASES.get(path, path)


def _model_fields(tree: dict[str, Any]) -> list[str]:
    """The fields a method may override of the sweep's model (all but its ``kind``)."""
    return [name for name in type(validate_model(tree["model"])).model_fields if name != "kind"]


def _check_path(tree: dict[str, Any], path: str, where: str) -> None:
    shown, path = path, canonical_path(path)
    parts = path.split(".")
    node: Any = tree
    for depth, part in enumerate(parts):
        if len(parts) == 4 and depth == 3 and parts[0] == "methods" and parts[2] == "model":
            if part not in _model_fields(tree):
                raise ConfigError(f"{where}: unknown field {shown!r}; known model fields: "
                                  f"{', '.join(_model_fields(tree))}")
            return
        if not isinstance(node, dict) or part not in node:
            known = sorted(node) if isinstance(node, dict) else []
            prefix = ".".join(parts[:depth]) or "the top level"
            hint = f"; known fields under {prefix}: {', '.join(known)}" if known else ""
            raise ConfigError(f"{where}: unknown field {shown!r}{hint}")
        node = node[part]
    if isinstance(node, dict):
        raise ConfigError(f"{where}: {shown!r} is a section, not a field; name one of its fields")


def _get(tree: dict[str, Any], path: str) -> Any:
    node = tree
    for part in canonical_path(path).split("."):
        node = node[part]
    return node


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    parts = canonical_path(path).split(".")
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
                    if not any(_matches(value, [option]) for value in config.grid[path]):
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
    for name, paths in (("x", [config.x] if config.x is not None else []), ("panel", config.panel_fields)):
        for path in paths:
            if path not in config.grid:
                raise ConfigError(f"{source}: field {name!r} = {path!r} must be one of the grid's fields "
                                  f"({', '.join(config.grid) or 'the grid is empty'})")
    if isinstance(config.panel, list) and (not config.panel or len(set(config.panel)) != len(config.panel)):
        raise ConfigError(f"{source}: field 'panel' must name distinct grid fields, got {config.panel!r}")
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
            problem = _validated("problem", validate_problem, resolved["problem"], base_dir=config._base_dir)
            model = _validated("model", validate_model, resolved["model"])
            unfit = model_fit(model, problem)
            if unfit:
                raise ValueError(unfit)
            problem_seed = resolved["problem_seed"]
            if problem_seed is not None:
                if isinstance(problem_seed, bool) or not isinstance(problem_seed, int) or problem_seed < 0:
                    raise ValueError(f"field 'problem_seed': must be a non-negative integer (got {problem_seed!r})")
                if not problem_kind(problem).seeded:
                    raise ValueError(f"field 'problem_seed': a {problem.kind!r} problem is the same for every "
                                     "seed; problem_seed applies to generated problems only")
            methods = {}
            for name, raw in resolved["methods"].items():
                try:
                    methods[name] = _validate_method(name, raw)
                except ValidationError as exc:
                    raise ValueError(_describe(exc, prefix=f"methods.{name}")) from None
                overrides = methods[name].model
                if "kind" in overrides:
                    raise ValueError(f"field 'methods.{name}.model.kind': a method cannot change the model kind")
                unknown = sorted(set(overrides) - set(_model_fields(resolved)))
                if unknown:
                    raise ValueError(f"field 'methods.{name}.model': unknown model field(s) {', '.join(unknown)}; "
                                     f"known: {', '.join(_model_fields(resolved))}")
                _validated(f"methods.{name}.model", validate_model, {**model.model_dump(), **overrides})
        except ValidationError as exc:
            raise ConfigError(f"{source}: at grid point {where} (scale {scale}): {_describe(exc)}") from None
        except ValueError as exc:
            raise ConfigError(f"{source}: at grid point {where} (scale {scale}): {exc}") from None
        points.append(ResolvedPoint(index, coords, problem, model, methods, problem_seed))
    return points


def _validated(prefix: str, validate, raw: Any, **options: Any) -> BaseModel:
    """``validate(raw)``, its errors described under ``prefix`` (as a ``ValueError``)."""
    try:
        return validate(raw, **options)
    except ValidationError as exc:
        raise ValueError(_describe(exc, prefix=prefix)) from None


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
        # An optimizer's own message already quotes the value it rejects.
        quiet = ("extra_forbidden", "missing", "optimizer_settings")
        detail = f" (got {given!r})" if error["type"] not in quiet and not isinstance(given, dict) else ""
        parts.append(f"field '{loc}': {message}{detail}")
    return "; ".join(parts)


def sweep_from_dict(data: Any, *, source: str = "<config>", base_dir: str | Path | None = None,
                    scale: str | None = None) -> SweepConfig:
    """Validate a parsed sweep (a dict) and check that every scale resolves.

    Args:
        base_dir: The folder relative problem files are relative to (default: the
            working directory; :func:`load_sweep` passes the file's folder).
        scale: The scale about to run, checked first, so that an error in it names it (an error in
            another scale still stops the load, naming that scale).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a sweep config must be a mapping at the top level, got {type(data).__name__}")
    try:
        config = SweepConfig.model_validate(dict(data), context={"base_dir": str(base_dir) if base_dir else None})
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
    names = config.scale_names()
    for name in sorted(names, key=lambda name: name != scale):
        resolve_points(config, name, source=source)
    return config


#: Sections whose keys are dotted field paths (``grid: {model.width: [...]}``, a scale's ``set``).
_DOTTED_MAPPINGS = ("grid", "set")


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` (a parsed sweep) with each ``KEY=VALUE`` of ``overrides`` set, in order (``volumelab run --set``).

    ``KEY`` is a dotted path into the config (``seeds``, ``methods.<name>.lr``, ``problem.rows``) and ``VALUE`` is
    YAML (``4``, ``[5, 20]``, ``{lr: 0.1}``, ``null``). A mapping whose keys are themselves dotted field paths
    (``grid``, a scale's ``set``) takes the rest of the path as one key: ``grid.model.width=[5, 20]`` sets
    ``grid: {model.width: [5, 20]}``. The result is validated like the file, so a misspelt key is an error
    naming it.

    Raises:
        ConfigError: an override is not ``KEY=VALUE`` or its value is not YAML.
    """
    tree = copy.deepcopy(dict(data))
    for item in overrides:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: write KEY=VALUE with a dotted KEY (e.g. seeds=4, problem.rows=6, "
                              "grid.model.width=[5,20])")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not YAML: {' '.join(str(exc).split())}") from None
        node, parts, head = tree, key.split("."), ""
        while True:
            rest = ".".join(parts)
            dotted = head in _DOTTED_MAPPINGS or any("." in str(name) for name in node)
            if rest in node or len(parts) == 1 or dotted:
                node[rest] = value
                break
            head = parts.pop(0)
            if not isinstance(node.get(head), dict):
                node[head] = {}
            node = node[head]
    return tree


def load_sweep(path: str | Path, overrides: Sequence[str] = (), *, scale: str | None = None) -> SweepConfig:
    """Read and validate a sweep YAML file, with ``overrides`` (``KEY=VALUE``, :func:`apply_overrides`) applied.

    Every scale it defines is checked; ``scale`` (the one about to run) first, so its errors name it.

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
    source = str(path)
    if overrides:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: a sweep config must be a mapping at the top level, got {type(data).__name__}")
        data = apply_overrides(data, overrides)
        source += " with " + " ".join(f"--set {item}" for item in overrides)
    return sweep_from_dict(data, source=source, base_dir=path.parent, scale=scale)


def describe_point(point: ResolvedPoint) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in point.coords.items())

