"""One study mechanism: a claim declared once, judged by one toolkit, combined by one rule.

A :class:`Study` is a pre-registration: the paper (arXiv id) and the claim in words, the
primary endpoint of each panel (a per-seed effect with its :class:`~volumelab.evidence.Rule`:
direction, minimal effect or equivalence margin, minimum seeds), which panels the claim is
about (the others are the project's extensions, judged by the same rule and reported as such),
secondary endpoints that are reported with their intervals but never decide, how a flagged
seed is set in the worst case, and the study's own plot. :func:`judge` computes every verdict
the same way:

1. **Missing data.** Every run whose status is not ``ok`` (no acceptance, not reached, not mixed,
   diverged, solve failed, ...) is *flagged*: all its numbers are left out of every endpoint,
   the same way for every metric. Each verdict is then recomputed with the flagged runs set to
   the value least favourable to the claim (the endpoint's ``worst_case``; for G&C, chance); if
   that changes a panel's decision, the panel is inconclusive and says why.
2. **Decision per panel** (:func:`~volumelab.evidence.decide_panels`): Student-t interval of the
   per-seed effect, holds / fails / inconclusive, Holm's correction across the panels the claim
   is about (and, separately, across the extension panels).
3. **The claim's verdict** (:data:`COMBINATION_RULE`): a claim "for every panel" holds when every
   judged panel holds, fails when any judged panel fails, and is inconclusive otherwise; a claim
   "for some panel" holds when some judged panel holds, fails when every judged panel fails, and
   is inconclusive otherwise. No judged panel: inconclusive.

Each study's rule has a digest (:meth:`Study.digest`) over everything that decides it (rules,
parameters, the endpoint's code); the date it last changed is kept in
``studies/rule_history.json`` (a test keeps the two in step), and the digest is stored with every
run so a report can say when results were judged under a rule changed after them.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .roles import companion, role_of
from .statistics import FAILS, HOLDS, INCONCLUSIVE, Decision, Rule, decide_panels

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COMBINATION_RULE", "Endpoint", "PanelData", "PanelResult", "RESULTS_DIR_ATTR", "RULE_HISTORY", "SOUND_STATUSES",
    "Study", "StudyVerdict", "at_chance", "combine", "flagged_rows", "get_study", "judge", "panel_data",
    "register_study", "registered_studies", "rule_changed", "rule_history", "split_panels",
    "stale_results",
]

COMBINATION_RULE = (
    "A claim about every panel holds when every panel it is about holds, fails when any of them fails, and is "
    "inconclusive otherwise; a claim about some panel holds when one of them holds, fails when all of them fail, "
    "and is inconclusive otherwise. Panels outside the claim (the project's extensions) are judged by the same "
    "rule and reported, but do not enter the claim's verdict.")


#: ``frame.attrs`` key of the folder holding the sweep's results store, for a study whose endpoint reads
#: what the runs stored besides the frame's columns (e.g. trajectories); the report builder sets it.
RESULTS_DIR_ATTR = "results_dir"

#: Statuses of a run whose numbers stand: G&C's ``ok``, GD's ``completed`` (its steps ran) and ``converged``.
#: Every other status (``no_acceptance``, ``not_reached``, ``budget_too_small``, ``not_mixed``, ``diverged``,
#: ``solve_failed``, ...) flags the run.
SOUND_STATUSES = frozenset({"ok", "completed", "converged"})


def flagged_rows(frame: "pd.DataFrame"):
    """A boolean Series: the runs whose status is not sound (their numbers enter no endpoint)."""
    return ~frame["status"].astype(str).isin(SOUND_STATUSES)


@dataclass
class PanelData:
    """The runs of one panel, as a study's endpoint reads them.

    Attributes:
        name: The panel's label (``""`` for a sweep without panels).
        frame: The panel's rows (columns ``method, method_type, x, seed, status``, the metrics,
            the grid's short names). Flagged rows have NaN in every metric.
        raw: The same rows as stored (flagged rows with their numbers), for worst-case values.
        flagged: ``(method, x, seed)`` of every flagged run.
    """

    name: str
    frame: "pd.DataFrame"
    raw: "pd.DataFrame"
    flagged: frozenset = frozenset()

    def method(self, role: str) -> str | None:
        """The method read as ``role`` (a registered role such as ``sampler``, ``trainer``, ``chance``,
        or a method type such as ``prior_law``): the one named like its type, else the first by name."""
        if not len(self.raw):
            return None
        types = dict(zip(self.raw["method"].astype(str), self.raw["method_type"].astype(str)))
        if role == "chance":
            sampler = self.method("sampler")
            name = companion(sampler, types[sampler], role) if sampler is not None else None
            if name in types:
                return name
        candidates = sorted((m, t) for m, t in types.items() if role_of(t) == role or t == role)
        for method, method_type in candidates:
            if method == method_type:
                return method
        return candidates[0][0] if candidates else None

    def xs(self, method: str | None) -> list:
        """The x values at which ``method`` ran, sorted."""
        if method is None:
            return []
        return sorted(set(self.raw.loc[self.raw["method"] == method, "x"]))

    def values(self, method: str | None, x, metric: str = "gen_loss", *, raw: bool = False) -> dict[int, float]:
        """``{seed: value}`` of ``metric`` for ``method`` at ``x``; seeds without a value (or flagged) are absent."""
        if method is None:
            return {}
        frame = self.raw if raw else self.frame
        rows = frame[(frame["method"] == method) & (frame["x"] == x)]
        if metric not in rows:
            return {}
        return {int(seed): float(value) for seed, value in zip(rows["seed"], rows[metric])
                if value is not None and not (isinstance(value, float) and math.isnan(value))}

    def seeds(self) -> list[int]:
        """Every seed of the panel."""
        return sorted({int(seed) for seed in self.raw["seed"]})

    def where(self, column: str, value) -> "PanelData":
        """The panel's runs whose ``column`` (a grid field's short name, e.g. ``inputs`` or ``width``) equals
        ``value``: for a study that compares arms of a grid field inside one panel (a law of the inputs, a
        width), each arm read as a panel of its own. The flagged runs are those of the kept rows. The arm's
        frame is the panel's own rows (the frame and ``raw`` share their index), so values a worst case set on
        the panel's frame carry over.

        Raises:
            KeyError: ``column`` is not a column of the panel's runs.
        """
        if column not in self.raw:
            raise KeyError(f"panel {self.name!r} has no column {column!r} (columns: {', '.join(map(str, self.raw))})")

        def same(cell) -> bool:
            try:
                return cell == value or float(cell) == float(value)
            except (TypeError, ValueError):
                return False

        raw = self.raw[[same(cell) for cell in self.raw[column]]]
        frame = self.frame[self.frame.index.isin(raw.index)]
        return PanelData(self.name, frame, raw, _flagged_runs(raw, flagged_rows(raw)) if len(raw) else frozenset())


@dataclass(frozen=True)
class Endpoint:
    """A per-seed effect and the rule that decides it.

    Attributes:
        rule: The decision rule (endpoint in words, direction, minimal effect or margin, seeds).
        effect: ``panel -> {seed: effect}``; seeds where the effect is undefined are left out
            (or NaN).
        worst_case: ``panel -> panel`` with every flagged run set to the value least favourable to
            the claim (e.g. :func:`at_chance`).
        worst_effect: Or: the per-seed effect a seed with a flagged run gets in the worst case (e.g.
            0, no change, for a claimed increase). With neither, a flagged seed stays left out in
            the worst case too.
    """

    rule: Rule
    effect: Callable[[PanelData], Mapping[int, float]]
    worst_case: Callable[[PanelData], PanelData] | None = None
    worst_effect: float | None = None


def at_chance(metric: str = "gen_loss", role: str = "sampler", chance_role: str = "chance"
              ) -> Callable[[PanelData], PanelData]:
    """The worst case for a sampler: a flagged run of ``role`` gets its seed's chance level (the
    prior's loss on the same problem at the same point), i.e. no advantage over chance."""

    def worst(panel: PanelData) -> PanelData:
        method, chance = panel.method(role), panel.method(chance_role)
        frame = panel.frame.copy()
        for flagged_method, x, seed in panel.flagged:
            if flagged_method != method:
                continue
            level = panel.values(chance, x, metric, raw=True).get(seed, math.nan)
            rows = (frame["method"] == method) & (frame["x"] == x) & (frame["seed"] == seed)
            frame.loc[rows, metric] = level
        return PanelData(panel.name, frame, panel.raw, panel.flagged)

    return worst


Quantifier = Literal["every", "some"]


@dataclass(frozen=True)
class Study:
    """A claim's pre-registration (see the module's docstring).

    Attributes:
        name: The sweep config's ``claim`` that selects this study (e.g. ``"theory-depth"``).
        paper: The paper the claim comes from (``"arXiv 2506.03931"``).
        claim: The claim in words.
        endpoints: ``{key: Endpoint}``: the primary endpoints the panels use.
        panel_endpoint: ``panel name -> key`` of its endpoint (``None``: the panel is not judged).
            Default: the single endpoint for every panel.
        about: ``panel name -> bool``: whether the claim is about this panel (``False``: an
            extension, judged and reported but not part of the claim's verdict). Default: all.
        quantifier: ``"every"`` or ``"some"``: see :data:`COMBINATION_RULE`.
        secondary: ``{name: Endpoint}`` reported with their intervals and decisions, never deciding.
        parameters: Further constants the rule depends on (e.g. a threshold the effect uses).
        notes: Sentences a report shows under the rule (what the endpoint measures and why).
        plot: ``(verdict, frame, out_stem, title) -> [paths]``: the study's own figure.
        panels: ``frame -> Series`` of panel labels, where the study groups rows itself (default:
            the sweep's panel column).
        outside: The word for the panels the claim is not about (``"extension"``, ``"reference"``).
    """

    name: str
    paper: str
    claim: str
    endpoints: Mapping[str, Endpoint]
    panel_endpoint: Callable[[str], str | None] | None = None
    about: Callable[[str], bool] | None = None
    quantifier: Quantifier = "every"
    secondary: Mapping[str, Endpoint] = field(default_factory=dict)
    parameters: Mapping[str, object] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    plot: Callable | None = None
    panels: Callable | None = None
    #: What the panels outside the claim are, in a report's words (e.g. "reference" for a baseline panel).
    outside: str = "extension"
    #: ``frame -> heading or None``: what the verdict is on where the sweep is not the paper's setting
    #: (e.g. "Ablation (G&C's prior not normalized)"); ``None``: "Paper's claim".
    heading: Callable | None = None

    def __post_init__(self):
        if self.quantifier not in ("every", "some"):
            raise ValueError(f"quantifier must be 'every' or 'some', got {self.quantifier!r}")
        if not self.endpoints:
            raise ValueError(f"study {self.name!r} declares no endpoint")
        if not self.paper.strip():
            raise ValueError(f"study {self.name!r} must name the paper its claim comes from")

    def with_rules(self, overrides: Mapping[str, Mapping[str, object]] | None) -> "Study":
        """This study with some of its primary rules' numbers replaced (a sweep config's ``verdict:``).

        Args:
            overrides: ``{endpoint key: {field: value}}`` with fields among ``minimal_effect``,
                ``margin``, ``target``, ``min_seeds`` (the direction is the claim's and cannot change).

        Raises:
            ValueError: an unknown endpoint or field, or a value the rule refuses.
        """
        from dataclasses import replace as replaced

        if not overrides:
            return self
        allowed = ("minimal_effect", "margin", "target", "min_seeds")
        endpoints = dict(self.endpoints)
        for key, fields in overrides.items():
            if key not in endpoints:
                raise ValueError(f"study {self.name!r} has no endpoint {key!r} (its endpoints: "
                                 f"{', '.join(endpoints)})")
            unknown = sorted(set(fields) - set(allowed))
            if unknown:
                raise ValueError(f"verdict.{key}: {', '.join(unknown)} cannot be set (allowed: {', '.join(allowed)})")
            endpoint = endpoints[key]
            endpoints[key] = replaced(endpoint, rule=replaced(endpoint.rule, **dict(fields)))
        return replaced(self, endpoints=endpoints)

    def endpoint_for(self, panel: str) -> str | None:
        if self.panel_endpoint is not None:
            return self.panel_endpoint(panel)
        return next(iter(self.endpoints))

    def is_about(self, panel: str) -> bool:
        return True if self.about is None else bool(self.about(panel))

    @property
    def rule_text(self) -> str:
        """The whole rule in words (endpoints, secondary endpoints, the combination)."""
        parts = [f"{key}: {e.rule.text}." if len(self.endpoints) > 1 else f"{e.rule.text}."
                 for key, e in self.endpoints.items()]
        if self.secondary:
            parts.append("Reported, not deciding: " + "; ".join(e.rule.text for e in self.secondary.values()) + ".")
        quantity = "every" if self.quantifier == "every" else "some"
        parts.append(f"The claim is about {quantity} panel it covers.")
        return " ".join(parts + list(self.notes))

    def digest(self) -> str:
        """A short digest of everything that decides the verdict: rules, parameters, the endpoints' code."""

        def source(function) -> str:
            """The function's code, name and the values it closes over (a factory's parameters)."""
            try:
                text = inspect.getsource(function)
            except (OSError, TypeError):
                text = ""
            cells = [cell.cell_contents for cell in (getattr(function, "__closure__", None) or ())]
            bound = [source(c) if callable(c) else re.sub(r" at 0x[0-9a-fA-F]+", "", repr(c)) for c in cells]
            return "\n".join([text, getattr(function, "__qualname__", repr(function)), *bound])

        content = {
            "name": self.name, "paper": self.paper, "claim": self.claim, "quantifier": self.quantifier,
            "endpoints": {k: {**e.rule.parameters(), "code": source(e.effect)} for k, e in self.endpoints.items()},
            "secondary": {k: {**e.rule.parameters(), "code": source(e.effect)} for k, e in self.secondary.items()},
            "parameters": {k: repr(v) for k, v in self.parameters.items()},
            "panel_endpoint": source(self.panel_endpoint) if self.panel_endpoint else None,
            "about": source(self.about) if self.about else None,
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PanelResult:
    """One panel's verdict: its primary decision and the secondary ones."""

    panel: str
    decision: Decision | None  # None: the panel is not judged
    about: bool
    secondary: Mapping[str, Decision] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        return self.decision.outcome if self.decision is not None else "measured"


@dataclass(frozen=True)
class StudyVerdict:
    """A study's verdict on its sweep.

    Attributes:
        study: The declaration.
        outcome: ``"holds"``, ``"fails"`` or ``"inconclusive"`` (:data:`COMBINATION_RULE`).
        panels: Every panel's result, in the sweep's panel order.
        digest: The rule's digest when judged.
    """

    study: Study
    outcome: str
    panels: tuple[PanelResult, ...]
    digest: str
    #: What the verdict is on, for a report (the paper's claim, or an ablation of it).
    heading: str = "Paper's claim"

    @property
    def sentence(self) -> str:
        return f"**{self.outcome.upper()}** (measured): {self.study.claim} ({self.study.paper})."

    @property
    def rule(self) -> str:
        return self.study.rule_text

    @property
    def detectable(self) -> float:
        """The smallest effect the judged panels can resolve: the largest interval half-width among them."""
        widths = [p.decision.effect.half_width for p in self.panels
                  if p.about and p.decision is not None and math.isfinite(p.decision.effect.half_width)]
        return max(widths) if widths else math.nan


def combine(outcomes: list[str], quantifier: Quantifier = "every") -> str:
    """The claim's verdict from its panels' outcomes (:data:`COMBINATION_RULE`)."""
    if not outcomes:
        return INCONCLUSIVE
    if quantifier == "every":
        if FAILS in outcomes:
            return FAILS
        return HOLDS if all(o == HOLDS for o in outcomes) else INCONCLUSIVE
    if HOLDS in outcomes:
        return HOLDS
    return FAILS if all(o == FAILS for o in outcomes) else INCONCLUSIVE


def _effects(endpoint: Endpoint, panel: PanelData) -> dict:
    values = endpoint.effect(panel)
    return {int(seed): float(v) for seed, v in dict(values).items()}


def row_settings(frame: "pd.DataFrame", column: str, section: str, key: str) -> list:
    """Each row's setting: its ``column`` (a grid field's short name, e.g. ``depth``), else, where the grid does
    not sweep it, the value in its stored ``config[section][key]`` (``None`` where neither has it)."""
    own = list(frame[column]) if column in frame else [None] * len(frame)
    configs = list(frame["config"]) if "config" in frame else [None] * len(frame)
    values = []
    for value, config in zip(own, configs):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            value = (config.get(section) or {}).get(key) if isinstance(config, dict) else None
        values.append(value)
    return values


def panel_data(rows: "pd.DataFrame", name: str = "") -> PanelData:
    """``rows`` as an endpoint or a plot reads them: every metric of a flagged run left out, the rows as
    stored kept in ``raw``, the flagged runs listed."""
    if not len(rows):
        return PanelData(name, rows, rows)
    flags = flagged_rows(rows)
    frame = rows.copy()
    if flags.any():
        numeric = [c for c in frame.columns if c not in ("x", "seed") and frame[c].dtype.kind in "fiu"]
        frame.loc[flags, numeric] = math.nan
        frame.loc[flags, [c for c in frame.columns if str(frame[c].dtype) == "Int64" and c != "seed"]] = None
    return PanelData(name, frame, rows, _flagged_runs(rows, flags))


def _flagged_runs(rows: "pd.DataFrame", flags) -> frozenset:
    """``(method, x, seed)`` of the ``rows`` that ``flags`` (a boolean mask of them) marks."""
    return frozenset((str(m), x, int(s)) for m, x, s in zip(rows.loc[flags, "method"], rows.loc[flags, "x"],
                                                            rows.loc[flags, "seed"]))


def split_panels(frame: "pd.DataFrame", labels) -> dict[str, PanelData]:
    """``{label: panel_data(rows with that label)}`` in the labels' order of first appearance."""
    labels = [str(label) for label in labels]
    return {name: panel_data(frame[[label == name for label in labels]], name) for name in dict.fromkeys(labels)}


def _decide(study: Study, panels: dict[str, PanelData], endpoints: Mapping[str, Endpoint],
            key_of: Mapping[str, str]) -> dict[str, Decision]:
    """Decisions for panels ``key_of`` (panel -> endpoint key), Holm-corrected together."""
    if not key_of:
        return {}
    effects, worst, flagged = {}, {}, {}
    for name, key in key_of.items():
        endpoint, panel = endpoints[key], panels[name]
        effects[name] = _effects(endpoint, panel)
        # A flagged seed counts where it is missing from the effect (a flagged run the endpoint reads), or
        # where the worst case moves its effect.
        candidates = {s for (m, x, s) in panel.flagged}
        relevant = {s for s in candidates if s not in effects[name]}
        if candidates and endpoint.worst_case is not None:
            worst_values = _effects(endpoint, endpoint.worst_case(panel))
            relevant |= {s for s in candidates if s in worst_values and worst_values.get(s) != effects[name].get(s)}
            if relevant:
                worst[name] = worst_values
        elif relevant and endpoint.worst_effect is not None:
            worst[name] = {**effects[name], **dict.fromkeys(relevant, float(endpoint.worst_effect))}
        flagged[name] = len(relevant)
    rules = {name: endpoints[key].rule for name, key in key_of.items()}
    return decide_panels(effects, rules, worst=worst or None, flagged=flagged)


def judge(study: Study, frame: "pd.DataFrame", panel: str | None = None, panel_order: list | None = None
          ) -> StudyVerdict:
    """Judge ``study`` on a sweep's rows.

    Args:
        study: The declaration.
        frame: The sweep's rows (:func:`volumelab.experiments.results.rows_to_frame`).
        panel: The column whose values are the panels (``None``: one panel, or the study's own
            ``panels``).
        panel_order: The panels' order in the report.

    Returns:
        The :class:`StudyVerdict`.
    """
    data = frame.copy()
    if study.panels is not None and len(data):
        data["_panel"] = [str(v) for v in study.panels(data)]
    elif panel and panel in data:
        data["_panel"] = [str(v) for v in data[panel]]
    else:
        data["_panel"] = ""
    names = list(dict.fromkeys(data["_panel"]))
    order = {str(v): i for i, v in enumerate(panel_order or [])}
    names.sort(key=lambda n: order.get(n, len(order)))
    panels = {name: panel_data(data[data["_panel"] == name].drop(columns="_panel"), name) for name in names}
    keys = {name: study.endpoint_for(name) for name in names}
    about = {name: keys[name] is not None and study.is_about(name) for name in names}
    decisions = _decide(study, panels, study.endpoints, {n: keys[n] for n in names if about[n]})
    decisions.update(_decide(study, panels, study.endpoints,
                             {n: keys[n] for n in names if keys[n] is not None and not about[n]}))
    secondary = {key: _decide(study, panels, study.secondary, {n: key for n in names if keys[n] is not None})
                 for key in study.secondary}
    results = tuple(PanelResult(n, decisions.get(n), about[n], {k: secondary[k][n] for k in secondary
                                                                 if n in secondary[k]}) for n in names)
    outcome = combine([r.outcome for r in results if r.about and r.decision is not None], study.quantifier)
    return StudyVerdict(study, outcome, results, study.digest())


#: Where the dates of the studies' rules are kept: ``{study: [{"digest", "date", "note"}, ...]}``, oldest first.
RULE_HISTORY = "rule_history.json"


def rule_history() -> dict[str, list[dict]]:
    """The recorded history of every study's rule (``volumelab/studies/rule_history.json``)."""
    from importlib import resources

    path = resources.files("volumelab.studies") / RULE_HISTORY
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def rule_changed(study: Study) -> str | None:
    """The date the study's current rule was recorded (``None``: its digest is not in the history)."""
    digest = study.digest()
    for entry in reversed(rule_history().get(study.name, [])):
        if entry["digest"] == digest:
            return entry["date"]
    return None


def stale_results(verdict: "StudyVerdict", stored_digests) -> int:
    """How many stored runs were judged under another rule than ``verdict``'s (their ``rule_digest``
    differs; runs stored before digests were kept have none and count as unknown, not stale)."""
    return sum(1 for d in stored_digests if isinstance(d, str) and d and d != verdict.digest)


_STUDIES: dict[str, Study] = {}


def register_study(study: Study) -> Study:
    """Make ``study`` the judge of sweeps whose ``claim`` is ``study.name`` (a later one replaces it)."""
    _STUDIES[study.name] = study
    return study


def _load() -> None:
    """Import the project's declarations (they register themselves on import)."""
    import importlib

    importlib.import_module("volumelab.studies")


def get_study(name: str) -> Study | None:
    """The study registered under ``name`` (``None``: no such study)."""
    if name not in _STUDIES:
        _load()
    return _STUDIES.get(name)


def registered_studies() -> dict[str, Study]:
    """Every registered study, by name."""
    _load()
    return dict(_STUDIES)
