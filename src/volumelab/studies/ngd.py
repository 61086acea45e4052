"""The natural-gradient studies (Kerekes, Mészáros, Huszár, arXiv 2111.11542), declared on the study mechanism.

The paper: natural gradient descent is (approximately) invariant to the parametrization, so it
"always follows the same trajectory and finds the same optimum"; the inductive biases that depth
and architecture give gradient descent (low rank in deep matrix factorization, sparsity on a deep
diagonal network) are therefore lost, and "there exist learning problems where natural gradient
descent fails to generalize, while gradient descent with the right architecture performs well".
Five claims are judged here, one :class:`~volumelab.evidence.Study` each, on the sweeps whose
``claim`` names them (``configs/ngd-*.yaml``; ``ngd-sparse-depth`` is judged by ``ngd-sparse``;
``ngd-mlp``, the nonlinear one, is described last).

**Which NGD.** Methods are read by type and role, not by name: *NGD* is the method of type
``ngd`` named like its type (else the first by name), *GD* the method with the role ``trainer``;
every other method of type ``ngd`` (e.g. ``ngd_train``) is an extension panel, judged by NGD's
rule and reported, never part of the claim's verdict. Since 2026-12-06 the configs of
``ngd-invariance`` and ``ngd-completion`` run the paper's NGD as ``ngd``: its Fisher averages over
the input distribution (``fisher: population``: every entry of W for a factorization), and every
method starts every depth from the same end-to-end function (``initialization: balanced``); NGD
with the Fisher of the *training* outputs only, which these studies ran as their NGD until then,
is the extension ``ngd_train``; the ``ngd-sparse`` configs followed the same day, with the population
Fisher over an unlabeled pool, a damping scaled with the Fisher's curvature (``damping_scale: curvature``,
so that late steps on separable data stay natural-gradient steps) and both ``n < d`` and ``n >= d``.
``ngd-invariance-width`` still runs the training-output Fisher: its tanh networks have no balanced start.
These declarations judge whatever NGD the configs run, by what
the claims say; the rules did not change.

**Panels.** Each study groups the sweep's rows itself (:attr:`Study.panels`), one panel per method
(``ngd-sparse``: per method and point of the sweep), because every claim contrasts GD with NGD:
the claim holds when GD's panel and NGD's panel both hold (:data:`~volumelab.evidence.COMBINATION_RULE`,
"every"). A seed makes the same problem at every point, so every effect is paired over seeds.

* ``ngd-invariance`` (x: depth). For each run, its distance to the run of the smallest depth with
  the same method and seed: ``max_t ||W_d(t) - W_1(t)||_F / max_t ||W_1(t)||_F`` over the recorded
  checkpoints (:func:`trajectory_distances`). Per seed, the endpoint is the largest distance over
  the depths above the smallest ("at every depth"). NGD: *equivalent to 0 within*
  :data:`INVARIANCE_MARGIN` (two one-sided tests: the trajectories nearly coincide). GD: *above*
  :data:`INVARIANCE_MARGIN` (GD's do not). Reported: the same distance in the training outputs
  ``<A_i, W>`` (equivalence within the same margin).
* ``ngd-invariance-width`` (x: width; depth 2 tanh against depth 1). Per seed, the fall of NGD's
  distance to depth 1 from the smallest to the largest width (the smallest fall over the depths
  above the smallest), claimed positive (invariance improves with over-parametrization; the paper
  names no size, so the minimal effect is 0). GD's fall is an extension panel, for comparison.
  Reported: the distance at the largest width, equivalent to 0 within :data:`INVARIANCE_MARGIN`.
* ``ngd-completion`` (x: depth). Per seed, ``log(L(smallest depth) / L(largest depth))`` of the
  generalization loss (the loss on the unobserved entries). GD: *above* ``log FLAT_BAND`` (improves
  with depth); NGD: *equivalent to 0 within* ``log FLAT_BAND`` (stays at the depth-1 level).
  Reported: the same log ratio of W's effective rank (positive: lower rank at the largest depth).
* ``ngd-sparse`` (x: training points or depth; a deep diagonal against a fully connected deep
  linear classifier). One panel per method and point; per seed
  ``log(S_fully_connected / S_diagonal)`` with ``S = ||w||_1^2 / ||w||_2^2`` the predictor's sparsity
  measure. GD: *above* ``log FLAT_BAND`` (the diagonal network's solution is sparser: GD's solution
  depends on the architecture); NGD: *equivalent to 0 within* ``log FLAT_BAND`` (NGD's does not).
  Reported, not deciding: the test errors of the two architectures differ by at most
  :data:`ERROR_MARGIN` (equivalence), and the l2 training margin as a share of the largest l2 margin
  of the training set (:func:`max_margin_l2`), fully connected minus diagonal, is positive (GD's
  fully connected net heads for the max-l2-margin direction, the diagonal net for an l1-type margin:
  Soudry et al. 2018, Gunasekar et al. 2018).

**Margins and minimal effects, and why.** The paper states no sizes. :data:`INVARIANCE_MARGIN`
(0.1, a tenth of the reference trajectory's own scale), :data:`FLAT_BAND` (1.25: a change of the
loss or of the sparsity by less than 25% either way is "no change") and :data:`ERROR_MARGIN` (0.02,
four times the binomial standard error of one run's test error on 10 000 test points, at most
0.005) are the thresholds the studies' first rules declared before their runs (commit 107e896,
2026-11-24); they are kept unchanged. Where a claim contrasts "GD changes" with "NGD does not",
the change GD must show is the same band NGD must stay inside (GD's minimal effect is
``log FLAT_BAND``, NGD's margin ``log FLAT_BAND``; GD's distance must exceed the margin NGD's
must stay under): one boundary says what "the same" means, so the two halves cannot both be
declared on one effect. Where the claim names only a direction (``ngd-invariance-width``,
the reported margin contrast) the minimal effect is 0.

**Flagged runs** (diverged, solve failed) enter no endpoint, and a seed with a flagged run that its
endpoint reads has no effect (it is never judged on the depths or widths that happened to finish);
in the worst case such a seed counts at the value least favourable to its panel's claim: no change
(0) for a claimed change, and for a claimed equivalence a value far outside the margin: a distance
of :data:`FLAGGED_DISTANCE` (as far from the reference as the reference is from zero), a log ratio
of :data:`FLAGGED_LOG_RATIO` (a tenfold change), a test-error gap of :data:`FLAGGED_ERROR_GAP`.

**History of the rules.** The first rules (commit 107e896, 2026-11-24) decided on medians against
thresholds, with a 2-SE condition for "holds" only. The ``ngd-sparse`` max-margin condition
(GD's fully connected median l2 margin at least 0.9 of the largest, which decided the claim) was
added in commit 7a65807 on 2026-11-24, *after* the sparse results had been seen (the margin
ratio measured 0.94, 0.91 and 0.88 at n = 10, 20, 40: docs commit 203c107 the same day). That
threshold is not kept: no finite-time share of the maximal margin follows from the paper or from
its theory (GD's direction approaches the max-margin one only like ``1 / log t``), so the margin is
now a reported contrast between the architectures, whose sign the theory predicts, and it decides
nothing. The old rules' Spearman conditions and fall ratios (0.8) are gone; the equivalence bands
are the old ones.

**Trajectories.** The invariance studies read the trajectories their runs recorded
(``trajectory_every``): from the frame's ``trajectory``, ``trajectory_train`` and
``trajectory_steps`` columns where it has them, else from the results store of the sweep's folder
named by ``frame.attrs[RESULTS_DIR_ATTR]`` (the report builder sets it; without either, those
studies have no effect to judge and say so).

**ngd-mlp: NGD's invariance to the parametrization on nonlinear networks.**

The paper's invariance findings "extend to nonlinear networks with sufficient but finite
over-parametrization". Measured on tanh MLPs of growing width on a teacher regression task
(``configs/ngd-mlp.yaml``), under the ``standard``, ``ntk`` and ``mup`` parametrizations
(:mod:`volumelab.models.mlp`) at depths 2 and 3. Every run starts from the zero function with the
same effective weights under every parametrization (``initialization: antisymmetric``,
:meth:`~volumelab.models.MLPModel.initialize_antisymmetric`), so the runs of one depth, width and
seed differ only in how their optimizer moves the weights, and every depth starts from the same
function. Each run records its outputs on the training and test points (``trajectory_every``).

**Which NGD.** As above: NGD is the method of type ``ngd`` named like its
type (the config's ``fisher: population``, the paper's), GD the trainer; any other method of type
``ngd`` (``ngd_train``, the Fisher of the training outputs only) is an extension panel, judged by
NGD's rule and reported. One panel per method; the claim holds when NGD's and GD's panels hold.

**The distance** between two runs' trajectories (:func:`mlp_trajectory_distances`): on the test points,
``max_t ||f_a(t) - f_b(t)|| / max_t ||f_b(t)||`` over the recorded checkpoints (the reference
``b`` is the ``standard`` run of the same method, depth, width and seed); the same on the training
points is reported.

**Endpoint** (per seed, at the largest width): the largest distance of an ``ntk`` or ``mup`` run to
the ``standard`` run, over both depths. NGD: *equivalent to 0 within* :data:`INVARIANCE_MARGIN`
(0.1, two one-sided tests); GD: *above* :data:`INVARIANCE_MARGIN`: one boundary says what "the same
trajectory" means, as in ``ngd-invariance``.

**Reported, not deciding** (every panel): the same largest distance on the training points
(equivalent within 0.1); the fall of the largest distance from the smallest to the largest width
("as width grows": a direction, minimal effect 0); and at the largest width the distance of the
depth-3 run's test-point trajectory to the depth-2 run's (same method, parametrization and seed;
the largest over the parametrizations), equivalent within 0.1: NGD in function space should not
depend on the architecture either.

**Flagged runs** (diverged, solve failed) enter no distance; a seed with a flagged run among those
an endpoint reads has no effect and counts at its worst case: a distance of
:data:`FLAGGED_DISTANCE` for an equivalence, no change (0) for GD's
"above" and for the fall.

**Rule** declared on 2026-12-06, before the study's first full run (dated in ``rule_history.json``).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..evidence import (
    RESULTS_DIR_ATTR, Endpoint, PanelData, Rule, Study, panel_data, register_study,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COMPLETION", "ERROR_MARGIN", "FLAGGED_DISTANCE", "FLAGGED_ERROR_GAP", "FLAGGED_LOG_RATIO", "FLAT_BAND",
    "INVARIANCE", "INVARIANCE_MARGIN", "INVARIANCE_WIDTH", "MLP_INVARIANCE", "REFERENCE_PARAMETRIZATION",
    "RESULTS_DIR_ATTR", "SPARSE", "depth_distance_at_largest_width", "max_margin_l2",
    "mlp_distance_fall_with_width", "mlp_distances", "mlp_trajectory_distances",
    "parametrization_distance_at_largest_width", "run_distances", "training_distance_at_largest_width",
    "trajectory_distances",
]

PAPER = "arXiv 2111.11542"

#: "Nearly coincide": a relative distance to the reference trajectory within this of 0 (kept from the first rule).
INVARIANCE_MARGIN = 0.1
#: "No change": a ratio within [1/FLAT_BAND, FLAT_BAND], i.e. a log ratio within ± log(FLAT_BAND) (kept).
FLAT_BAND = 1.25
FLAT_MARGIN = math.log(FLAT_BAND)
#: "The same test error": two test errors within this of each other (kept; 4 binomial SEs of one run).
ERROR_MARGIN = 0.02
#: Worst cases of a flagged run for the equivalence endpoints (far outside their margins).
FLAGGED_DISTANCE = 1.0
FLAGGED_LOG_RATIO = math.log(10.0)
FLAGGED_ERROR_GAP = 0.5
#: The key of ``frame.attrs`` that names the sweep's folder, whose store holds the recorded trajectories.

DIAGONAL, FULLY_CONNECTED = "diagonal", "fully_connected"
GD_PANEL, NGD_PANEL = "GD", "NGD"


# ------------------------------------------------------------------ which method a row belongs to
def _method_labels(frame: "pd.DataFrame") -> dict[str, str]:
    """``{method: panel label}``: ``GD`` for the trainer, ``NGD`` for the NGD read by type, ``NGD, <what
    differs> (extension)`` for every other method of type ``ngd`` (the project's own variations, not the paper's
    NGD), ``other: <name>`` for the rest."""
    whole = PanelData("", frame, frame)
    gd, ngd = whole.method("trainer"), whole.method("ngd")
    types = dict(zip(frame["method"].astype(str), frame["method_type"].astype(str)))
    labels = {}
    for method, method_type in types.items():
        if method == gd:
            labels[method] = GD_PANEL
        elif method == ngd:
            labels[method] = NGD_PANEL
        elif method_type == "ngd":
            labels[method] = f"{NGD_PANEL}, {_setting_difference(frame, method, ngd)} (extension)"
        else:
            labels[method] = f"other: {method}"
    return labels


def _method_settings(frame: "pd.DataFrame", name: str) -> dict:
    """The stored settings of method ``name`` (its rows' ``config["method"]``), ``{}`` where the frame has none."""
    if "config" not in frame:
        return {}
    for config in frame.loc[frame["method"] == name, "config"]:
        if isinstance(config, dict):
            return dict(config.get("method") or {})
    return {}


def _setting_difference(frame: "pd.DataFrame", method: str, reference: str | None) -> str:
    """What sets ``method`` apart from ``reference``: its Fisher where it differs (with the unobserved entries it
    adds, if any), else its name."""
    mine, theirs = _method_settings(frame, method), _method_settings(frame, reference) if reference else {}
    if not mine:
        return method
    fisher = mine.get("fisher", "train")
    extra = mine.get("unobserved")
    if extra:
        return f"fisher {fisher} + {extra} unobserved entries"
    if fisher != theirs.get("fisher", "train"):
        return f"fisher {fisher}"
    return method


def _by_method(frame: "pd.DataFrame") -> list[str]:
    """Panels: one per method (its label from :func:`_method_labels`)."""
    if not len(frame):
        return []
    labels = _method_labels(frame)
    return [labels[str(m)] for m in frame["method"]]


def _swept_column(frame: "pd.DataFrame") -> str | None:
    """The grid column whose values are the rows' x (``train`` or ``depth`` in the sparse sweeps)."""
    import pandas as pd

    for column in ("train", "depth", "width"):
        if column in frame and len(frame):
            values = pd.to_numeric(frame[column], errors="coerce")
            if values.notna().all() and (values.to_numpy(dtype=float) == frame["x"].to_numpy(dtype=float)).all():
                return column
    return None


_X_WORDS = {"train": ("training points", "n"), "depth": ("depth", "d"), "width": ("width", "k")}


def _x_words(frame: "pd.DataFrame") -> tuple[str, str]:
    """``(axis label in words, symbol)`` of the swept field."""
    return _X_WORDS.get(_swept_column(frame) or "", ("x", "x"))


def _by_method_and_point(frame: "pd.DataFrame") -> list[str]:
    """Panels of ``ngd-sparse``: one per method and point of the sweep, e.g. ``GD, n = 10``."""
    if not len(frame):
        return []
    labels = _method_labels(frame)
    symbol = _x_words(frame)[1]
    return [f"{labels[str(m)]}, {symbol} = {x:g}" for m, x in zip(frame["method"], frame["x"])]


def _claim_panel(name: str) -> bool:
    """Whether a panel is one the claim is about (GD's or NGD's, not an extension's)."""
    return name.split(",")[0] in (GD_PANEL, NGD_PANEL) and "(extension)" not in name


def _only_method(panel: PanelData) -> str | None:
    """The panel's method (every panel here holds one method's rows)."""
    methods = list(dict.fromkeys(panel.raw["method"].astype(str))) if len(panel.raw) else []
    return methods[0] if methods else None


# ------------------------------------------------------------------ trajectories
def trajectory_distances(run, reference) -> dict[str, float]:
    """Relative distances between two recorded trajectories (arrays of ``trajectory_every``).

    Args:
        run, reference: Mappings with ``trajectory`` ``(checkpoints, ...)`` (the whole outputs, e.g.
            a factorization's W), ``trajectory_train`` ``(checkpoints, m)`` (the training outputs)
            and ``trajectory_steps`` ``(checkpoints,)``.

    Returns:
        ``whole``: ``max_t ||T_run(t) - T_ref(t)|| / max_t ||T_ref(t)||`` of the whole outputs;
        ``train``: the same for the training outputs; ``final``: ``||T_run(T) - T_ref(T)|| /
        ||T_ref(T)||`` at the last checkpoint.

    Raises:
        ValueError: the two runs recorded different checkpoints.
    """
    import numpy as np

    if not np.array_equal(run["trajectory_steps"], reference["trajectory_steps"]):
        raise ValueError("the two runs recorded different checkpoints; give them the same steps and "
                         "trajectory_every")
    out = {}
    for name, key in (("whole", "trajectory"), ("train", "trajectory_train")):
        a = np.asarray(run[key], dtype=float).reshape(len(run[key]), -1)
        b = np.asarray(reference[key], dtype=float).reshape(len(reference[key]), -1)
        scale = float(np.linalg.norm(b, axis=1).max())
        out[name] = float(np.linalg.norm(a - b, axis=1).max() / scale) if scale > 0 else math.nan
        if name == "whole":
            final = float(np.linalg.norm(b[-1]))
            out["final"] = float(np.linalg.norm(a[-1] - b[-1]) / final) if final > 0 else math.nan
    return out


_TRAJECTORY_KEYS = ("trajectory", "trajectory_train", "trajectory_steps")


@functools.lru_cache(maxsize=4)
def _stored_arrays(results_dir: str, stamp: tuple) -> dict:
    """Every kept array of the store in ``results_dir`` (cached while the database is unchanged)."""
    from ..experiments.results import load_arrays

    return load_arrays(results_dir)


def _store_stamp(results_dir: str) -> tuple:
    from ..experiments.store import DATABASE_NAME

    path = Path(results_dir)
    databases = [path / DATABASE_NAME] if (path / DATABASE_NAME).is_file() else sorted(path.glob(f"*/{DATABASE_NAME}"))
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in databases)


def _trajectory_source(frame: "pd.DataFrame"):
    """``row -> trajectory arrays or None``: the frame's own columns, else the store named by its attrs."""
    if "trajectory" in frame:
        def from_columns(row):
            value = row.get("trajectory")
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return None
            return {key: row[key] for key in _TRAJECTORY_KEYS}

        return from_columns
    results_dir = frame.attrs.get(RESULTS_DIR_ATTR)
    if not results_dir:
        return lambda row: None
    stamp = _store_stamp(str(results_dir))
    if not stamp:
        return lambda row: None
    arrays = _stored_arrays(str(results_dir), stamp)

    def from_store(row):
        found = arrays.get(row.get("run_key"))
        return found if found is not None and "trajectory" in found else None

    return from_store


def _depth_of(row) -> float:
    return float(row["depth"]) if "depth" in row and row["depth"] is not None else float(row["x"])


def _context(row) -> tuple:
    """What a run shares with its reference run besides method and seed: its grid coordinates other than depth."""
    config = row.get("config")
    if isinstance(config, dict) and isinstance(config.get("coords"), dict):
        return tuple(sorted((path, json.dumps(value, sort_keys=True)) for path, value in config["coords"].items()
                            if path.rsplit(".", 1)[-1] != "depth"))
    return tuple((c, row[c]) for c in ("width",) if c in row)


def run_distances(panel: PanelData) -> "pd.DataFrame":
    """One row per run above the smallest depth: its :func:`trajectory_distances` to the run of the
    smallest depth with the same method, seed and other grid coordinates.

    Flagged runs (and runs whose reference is flagged) have no row. Columns ``method, seed, x,
    depth, whole, train, final, steps, curve`` (``curve``: the relative distance at every
    checkpoint, ``||T_run(t) - T_ref(t)|| / max_t ||T_ref(t)||``).
    """
    import numpy as np
    import pandas as pd

    columns = ["method", "seed", "x", "depth", "whole", "train", "final", "steps", "curve"]
    raw = panel.raw
    if not len(raw):
        return pd.DataFrame(columns=columns)
    source = _trajectory_source(raw)
    records = [dict(row) for _, row in raw.iterrows()]
    usable = [r for r in records if (str(r["method"]), r["x"], int(r["seed"])) not in panel.flagged]
    references, runs = [], []
    smallest = {}  # over every run, flagged or not: a flagged reference leaves its seed without distances
    for r in records:
        key = (str(r["method"]), _context(r))
        smallest[key] = min(smallest.get(key, math.inf), _depth_of(r))
    for r in usable:
        key = (str(r["method"]), _context(r))
        (references if _depth_of(r) == smallest[key] else runs).append(r)
    by_key = {(str(r["method"]), _context(r), int(r["seed"])): r for r in references}
    out = []
    for r in runs:
        reference = by_key.get((str(r["method"]), _context(r), int(r["seed"])))
        if reference is None:
            continue
        a, b = source(r), source(reference)
        if a is None or b is None:
            continue
        distances = trajectory_distances(a, b)
        whole_a = np.asarray(a["trajectory"], dtype=float).reshape(len(a["trajectory"]), -1)
        whole_b = np.asarray(b["trajectory"], dtype=float).reshape(len(b["trajectory"]), -1)
        scale = max(float(np.linalg.norm(whole_b, axis=1).max()), 1e-300)
        out.append({"method": str(r["method"]), "seed": int(r["seed"]), "x": r["x"], "depth": _depth_of(r),
                    **distances, "steps": np.asarray(a["trajectory_steps"]),
                    "curve": np.linalg.norm(whole_a - whole_b, axis=1) / scale})
    return pd.DataFrame.from_records(out, columns=columns)


def _flagged_seeds(panel: PanelData, xs=None) -> set[int]:
    """Seeds with a flagged run (at one of ``xs``, where given): an effect that reads such a run has no value
    for the seed, so the mechanism counts it and puts it at its worst case (a seed is never judged on the
    runs that happened to finish)."""
    return {s for (m, x, s) in panel.flagged if xs is None or x in xs}


def _largest_distance(panel: PanelData, column: str) -> dict[int, float]:
    """Per seed: the largest distance (``column``) to the smallest depth's run over the runs above it."""
    distances = run_distances(panel)
    flagged = _flagged_seeds(panel)
    out: dict[int, float] = {}
    for seed, value in zip(distances["seed"], distances[column]):
        if math.isfinite(value) and int(seed) not in flagged:
            out[int(seed)] = max(out.get(int(seed), -math.inf), float(value))
    return out


def distance_to_depth_one(panel: PanelData) -> dict[int, float]:
    """Per seed: the largest relative distance of the whole end-to-end W's trajectory to the
    smallest depth's, over the depths above it."""
    return _largest_distance(panel, "whole")


def training_output_distance(panel: PanelData) -> dict[int, float]:
    """Per seed: the same in the training outputs ``<A_i, W>``."""
    return _largest_distance(panel, "train")


def _distance_by_width(panel: PanelData) -> dict[float, dict[float, dict[int, float]]]:
    """``{depth: {width (x): {seed: whole-W distance}}}`` over the depths above the smallest."""
    distances = run_distances(panel)
    out: dict = {}
    for depth, x, seed, value in zip(distances["depth"], distances["x"], distances["seed"], distances["whole"]):
        if math.isfinite(value):
            out.setdefault(float(depth), {}).setdefault(float(x), {})[int(seed)] = float(value)
    return out


def distance_fall_with_width(panel: PanelData) -> dict[int, float]:
    """Per seed: distance at the smallest width minus at the largest (the smallest fall over the depths)."""
    widths = [float(x) for x in panel.xs(_only_method(panel))]
    if len(widths) < 2:
        return {}
    flagged = _flagged_seeds(panel, {widths[0], widths[-1]})
    falls: dict[int, float] = {}
    for by_width in _distance_by_width(panel).values():
        first, last = by_width.get(widths[0], {}), by_width.get(widths[-1], {})
        for seed in (first.keys() & last.keys()) - flagged:
            falls[seed] = min(falls.get(seed, math.inf), first[seed] - last[seed])
    return falls


def distance_at_largest_width(panel: PanelData) -> dict[int, float]:
    """Per seed: the distance to depth 1 at the largest width (the largest over the depths)."""
    widths = [float(x) for x in panel.xs(_only_method(panel))]
    if not widths:
        return {}
    flagged = _flagged_seeds(panel, {widths[-1]})
    out: dict[int, float] = {}
    for by_width in _distance_by_width(panel).values():
        for seed, value in by_width.get(widths[-1], {}).items():
            if seed not in flagged:
                out[seed] = max(out.get(seed, -math.inf), value)
    return out


# ------------------------------------------------------------------ completion: log ratios over depth
def _log_ratio_over_depth(panel: PanelData, metric: str) -> dict[int, float]:
    method = _only_method(panel)
    xs = panel.xs(method)
    if len(xs) < 2:
        return {}
    first, last = panel.values(method, xs[0], metric), panel.values(method, xs[-1], metric)
    return {s: math.log(first[s] / last[s]) for s in first.keys() & last.keys() if first[s] > 0 and last[s] > 0}


def loss_log_ratio_over_depth(panel: PanelData) -> dict[int, float]:
    """Per seed: ``log(L(smallest depth) / L(largest depth))`` of the generalization loss (positive: better deeper)."""
    return _log_ratio_over_depth(panel, "gen_loss")


def rank_log_ratio_over_depth(panel: PanelData) -> dict[int, float]:
    """Per seed: ``log(rank(smallest depth) / rank(largest depth))`` of W's effective rank (positive: lower deeper)."""
    return _log_ratio_over_depth(panel, "effective_rank")


# ------------------------------------------------------------------ sparse: the two architectures at one point
def _by_architecture(panel: PanelData, metric: str) -> dict[str, dict[int, float]]:
    """``{architecture: {seed: metric}}`` of the panel's runs (flagged runs have no value)."""
    frame = panel.frame
    out: dict[str, dict[int, float]] = {}
    if metric not in frame or "architecture" not in frame:
        return out
    for architecture, seed, value in zip(frame["architecture"], frame["seed"], frame[metric]):
        if value is not None and math.isfinite(float(value)):
            out.setdefault(str(architecture), {})[int(seed)] = float(value)
    return out


def sparsity_log_ratio(panel: PanelData) -> dict[int, float]:
    """Per seed: ``log(S_fully_connected / S_diagonal)``, ``S = ||w||_1^2 / ||w||_2^2`` (positive: the diagonal
    network's solution is sparser)."""
    values = _by_architecture(panel, "sparsity")
    diagonal, full = values.get(DIAGONAL, {}), values.get(FULLY_CONNECTED, {})
    return {s: math.log(full[s] / diagonal[s]) for s in diagonal.keys() & full.keys()
            if diagonal[s] > 0 and full[s] > 0}


def error_rate_gap(panel: PanelData) -> dict[int, float]:
    """Per seed: test error of the fully connected net minus the diagonal network's."""
    values = _by_architecture(panel, "test_error")
    diagonal, full = values.get(DIAGONAL, {}), values.get(FULLY_CONNECTED, {})
    return {s: full[s] - diagonal[s] for s in diagonal.keys() & full.keys()}



def max_margin_l2(inputs, labels) -> float:
    """The largest l2 margin ``max_{||w|| = 1} min_i y_i <w, x_i>`` of separable data (no bias): ``1 / ||w||`` of
    the hard-margin SVM (:func:`~volumelab.diagnostics.max_margin.l2_max_margin`, certified by its KKT residual);
    NaN when the data are not separable through the origin."""
    from ..diagnostics.max_margin import l2_max_margin
    from ..errors import VolumelabError

    try:
        return l2_max_margin(inputs, labels).margin
    except VolumelabError:
        return math.nan


@functools.lru_cache(maxsize=256)
def _problem_max_margin(problem_json: str, problem_seed: int) -> float:
    from ..experiments.kinds import build_problem, validate_problem

    problem = build_problem(validate_problem(json.loads(problem_json)), problem_seed)
    return max_margin_l2(problem.X_train.numpy(), problem.y_train.numpy())


def _max_margin_of(row) -> float:
    """The largest l2 margin of a run's training set: the frame's ``max_margin_l2`` column where it has one,
    else rebuilt from the run's stored problem settings and seed."""
    given = row.get("max_margin_l2")
    if given is not None and not (isinstance(given, float) and math.isnan(given)):
        return float(given)
    config = row.get("config")
    if not isinstance(config, dict) or "problem" not in config:
        return math.nan
    seed = int(config.get("problem_seed", row["seed"]))
    return _problem_max_margin(json.dumps(config["problem"], sort_keys=True), seed)


def margin_shares(panel: PanelData) -> dict[str, dict[int, float]]:
    """``{architecture: {seed: l2 training margin / the largest l2 margin of the training set}}``."""
    frame = panel.frame
    out: dict[str, dict[int, float]] = {}
    if "margin_l2" not in frame or "architecture" not in frame:
        return out
    for _, row in frame.iterrows():
        margin = row["margin_l2"]
        if margin is None or not math.isfinite(float(margin)):
            continue
        best = _max_margin_of(row)
        if math.isfinite(best) and best > 0:
            out.setdefault(str(row["architecture"]), {})[int(row["seed"])] = float(margin) / best
    return out


def l1_direction_gap(panel: PanelData) -> dict[int, float]:
    """Per seed: the cosine of the diagonal network's predictor with the training set's l1 max-margin direction
    minus the fully connected net's (``cos_l1_margin``; positive: the diagonal network heads for the l1 margin)."""
    values = _by_architecture(panel, "cos_l1_margin")
    diagonal, full = values.get(DIAGONAL, {}), values.get(FULLY_CONNECTED, {})
    return {s: diagonal[s] - full[s] for s in diagonal.keys() & full.keys()}


def margin_share_gap(panel: PanelData) -> dict[int, float]:
    """Per seed: the fully connected net's share of the max l2 margin minus the diagonal network's."""
    shares = margin_shares(panel)
    diagonal, full = shares.get(DIAGONAL, {}), shares.get(FULLY_CONNECTED, {})
    return {s: full[s] - diagonal[s] for s in diagonal.keys() & full.keys()}


# ------------------------------------------------------------------ plots
_COLORS = {GD_PANEL: "#d62728", NGD_PANEL: "#2ca02c"}
_ABLATION_COLORS = ("#9467bd", "#8c564b", "#17becf")


def _color(label: str, index: int) -> str:
    return _COLORS.get(label, _ABLATION_COLORS[index % len(_ABLATION_COLORS)])


def _draw(ax, xs, series: list[Mapping[int, float]], color: str, label: str, style: str = "o-") -> None:
    """Mean over seeds with its 95% t interval as a band."""
    from ..plotting.figures import draw_seed_means

    draw_seed_means(ax, xs, series, style=style, color=color, label=label)


def _whole_panel(frame: "pd.DataFrame") -> PanelData:
    """The plot's view of a frame: every method, flagged runs marked and their numbers left out (as in a verdict)."""
    return panel_data(frame)


def _method_views(frame: "pd.DataFrame") -> list[tuple[str, PanelData]]:
    """``(label, panel of that method's rows)`` for GD, NGD and the NGD extensions."""
    whole = _whole_panel(frame)
    labels = _method_labels(frame)
    views = []
    for method, label in sorted(labels.items(), key=lambda item: (item[1] != NGD_PANEL, item[1] != GD_PANEL, item[1])):
        if label.startswith("other"):
            continue
        rows = frame["method"].astype(str) == method
        views.append((label, PanelData(label, whole.frame[rows], frame[rows],
                                       frozenset(f for f in whole.flagged if f[0] == method))))
    return views


def _legend(ax, fontsize: int) -> None:
    """A legend where the axes have labelled artists (none where every point was left out)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=fontsize, frameon=False)


def _footer(fig, text: str, width: int) -> float:
    """Write ``text`` under the axes, wrapped to the figure's width; returns the height it takes (a fraction)."""
    import textwrap

    lines = textwrap.wrap(text, width=width)
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, color="#555555", va="bottom")
    return 0.035 * len(lines) + 0.01


def _verdict_note(verdict) -> str:
    return "Verdict per panel: " + "; ".join(f"{p.panel}: {p.outcome}" + ("" if p.about else " (extension)")
                                             for p in verdict.panels if p.decision is not None)


def _plot_invariance(verdict, frame: "pd.DataFrame", out_stem: Path, title: str) -> list[Path]:
    import numpy as np

    from ..plotting.figures import new_figure, save_figure as _save

    views = [(label, view, run_distances(view)) for label, view in _method_views(frame)]
    views = [(label, view, d) for label, view, d in views if len(d)]
    if not views:
        return []
    fig = new_figure((14.5, 4.3))
    axes = fig.subplots(1, 3)
    for ax, column, name in ((axes[0], "whole", "whole W"), (axes[1], "train", "training outputs")):
        for index, (label, _, distances) in enumerate(views):
            depths = sorted(set(distances["depth"]))
            series = [{int(s): float(v) for s, v in zip(part["seed"], part[column]) if math.isfinite(v)}
                      for part in (distances[distances["depth"] == d] for d in depths)]
            _draw(ax, depths, series, _color(label, index), label)
            ax.set_xticks(depths, [f"{d:g}" for d in depths])
        ax.axhspan(0, INVARIANCE_MARGIN, color="#2ca02c", alpha=0.08, linewidth=0)
        ax.axhline(INVARIANCE_MARGIN, color="#555555", linestyle="--", linewidth=1,
                   label=f"margin {INVARIANCE_MARGIN:g}: NGD within, GD beyond")
        ax.set(xlabel="depth $d$", ylabel=f"distance to depth 1's trajectory ({name})",
               title=f"{name}: mean over seeds, 95% interval")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        _legend(ax, 7)
    top = max(ax.get_ylim()[1] for ax in axes[:2])
    for ax in axes[:2]:
        ax.set_ylim(0, top)
    ax = axes[2]
    for index, (label, _, distances) in enumerate(views[:2]):
        for j, depth in enumerate(sorted(set(distances["depth"]))):
            part = distances[distances["depth"] == depth]
            curve = np.mean(np.stack(part["curve"].to_list()), axis=0)
            ax.plot(part["steps"].iloc[0], curve, "-" if label == NGD_PANEL else "--", color=_color(label, index),
                    alpha=0.45 + 0.55 * (j + 1) / len(set(distances["depth"])), label=f"{label}, depth {depth:g}")
    ax.axhline(INVARIANCE_MARGIN, color="#555555", linestyle="--", linewidth=1)
    ax.set(xlabel="step", ylabel="distance to depth 1's W at this step (whole W)",
           title="along the run (mean over seeds)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _legend(ax, 6)
    bottom = _footer(fig, _verdict_note(verdict), 220)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return _save(fig, out_stem)


def _plot_invariance_width(verdict, frame: "pd.DataFrame", out_stem: Path, title: str) -> list[Path]:
    from ..plotting.figures import new_figure, save_figure as _save

    views = [(label, _distance_by_width(view)) for label, view in _method_views(frame)]
    views = [(label, d) for label, d in views if d]
    depths = sorted({depth for _, by_depth in views for depth in by_depth})
    if not depths:
        return []
    fig = new_figure((max(7.0, 5.2 * len(depths)), 4.6))
    axes = fig.subplots(1, len(depths), squeeze=False)[0]
    for ax, depth in zip(axes, depths):
        for index, (label, by_depth) in enumerate(views):
            by_width = by_depth.get(depth, {})
            widths = sorted(by_width)
            _draw(ax, widths, [by_width[w] for w in widths], _color(label, index), label)
        widths = sorted({w for _, by_depth in views for w in by_depth.get(depth, {})})
        ax.axhline(INVARIANCE_MARGIN, color="#555555", linestyle="--", linewidth=1,
                   label=f"{INVARIANCE_MARGIN:g}: 'nearly coincide' (reported)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [f"{w:g}" for w in widths])
        ax.set(xlabel="width $k$", ylabel="distance to depth 1's trajectory (whole W)",
               title=f"depth {depth:g} against depth 1: mean over seeds, 95% interval")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        _legend(ax, 7)
    bottom = _footer(fig, "The claim: NGD's distance falls from the smallest to the largest width. "
                     + _verdict_note(verdict), int(16 * max(7.0, 5.2 * len(depths))))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return _save(fig, out_stem)


def fisher_entries(frame: "pd.DataFrame", method: str) -> int | None:
    """How many unobserved entries of a completion task an NGD method's Fisher holds: ``unobserved`` (0 without) for
    ``fisher: train``, all of them for ``population`` / ``output``; ``None`` for other methods or without configs."""
    settings = _method_settings(frame, method)
    if not settings or "fisher" not in settings and settings.get("type") != "ngd":
        return None
    if settings.get("fisher", "train") == "train":
        return int(settings.get("unobserved") or 0)
    for config in frame.loc[frame["method"] == method, "config"]:
        problem = config.get("problem") if isinstance(config, dict) else None
        if isinstance(problem, dict) and {"rows", "cols", "measurements"} <= problem.keys():
            return int(problem["rows"]) * int(problem["cols"]) - int(problem["measurements"])
    return None


def _plot_completion(verdict, frame: "pd.DataFrame", out_stem: Path, title: str) -> list[Path]:
    """The log ratios against depth (generalization loss, effective rank) and, where NGD's Fisher holds different
    numbers of unobserved entries, NGD's generalization loss against that number at every depth."""
    from ..plotting.figures import new_figure, save_figure as _save

    views = _method_views(frame)
    if not views:
        return []
    entries = {label: fisher_entries(frame, _only_method(view)) for label, view in views}
    interpolation = sorted((count, label, view) for label, view in views if (count := entries[label]) is not None)
    panels = 3 if len(interpolation) > 2 else 2
    fig = new_figure((6 * panels, 4.6))
    axes = fig.subplots(1, panels)
    for ax, metric, words in ((axes[0], "gen_loss", "generalization loss"), (axes[1], "effective_rank",
                                                                             "effective rank of W")):
        for index, (label, view) in enumerate(views):
            method = _only_method(view)
            depths = view.xs(method)
            if not depths:
                continue
            first = view.values(method, depths[0], metric)
            series = [{s: math.log(first[s] / v) for s, v in view.values(method, d, metric).items()
                       if s in first and first[s] > 0 and v > 0} for d in depths]
            _draw(ax, depths, series, _color(label, index), label)
            ax.set_xticks(depths, [f"{d:g}" for d in depths])
        ax.axhline(0, color="#555555", linewidth=0.8)
        ax.set(xlabel="depth $d$", ylabel=f"log({words} at depth 1 / at depth d)",
               title=f"{words}: mean over seeds, 95% interval")
        ax.grid(alpha=0.3)
    axes[0].axhspan(-FLAT_MARGIN, FLAT_MARGIN, color="#2ca02c", alpha=0.12, linewidth=0,
                    label=f"± log {FLAT_BAND:g}: NGD stays inside, GD ends above")
    _legend(axes[0], 7)
    _legend(axes[1], 7)
    if panels == 3:
        ax = axes[2]
        counts = [count for count, _, _ in interpolation]
        depths = sorted({d for _, _, view in interpolation for d in view.xs(_only_method(view))})
        for j, depth in enumerate(depths):
            series = [view.values(_only_method(view), depth, "gen_loss") for _, _, view in interpolation]
            _draw(ax, counts, series, "#2ca02c", f"NGD, depth {depth:g}", "o-" if j == len(depths) - 1 else "s--")
            ax.lines[-1].set_alpha(0.35 + 0.65 * (j + 1) / len(depths))
        gd = next((view for label, view in views if label == GD_PANEL), None)
        if gd is not None and depths:
            deepest = gd.values(_only_method(gd), depths[-1], "gen_loss")
            if deepest:
                ax.axhline(sum(deepest.values()) / len(deepest), color=_COLORS[GD_PANEL], linestyle=":",
                           label=f"GD at depth {depths[-1]:g} (mean)")
        ax.set(xlabel="unobserved entries in NGD's Fisher (0: training Fisher; all: population)",
               ylabel="generalization loss (log scale)", yscale="log",
               title="how much of depth's low-rank bias survives")
        ax.set_xticks(counts, [f"{c:g}" for c in counts])
        ax.grid(alpha=0.3)
        _legend(ax, 7)
    bottom = _footer(fig, "Above 0: lower than at depth 1. The verdict compares the smallest with the largest "
                     "depth. " + _verdict_note(verdict), 95 * panels)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return _save(fig, out_stem)


def _plot_sparse(verdict, frame: "pd.DataFrame", out_stem: Path, title: str) -> list[Path]:
    """Top: the verdict's effect, the sparsity and the test error by architecture; bottom: the cosine of the
    predictor with each limit direction of its training set (l1 and l2 max margin, min-norm interpolant)."""
    from ..plotting.figures import new_figure, save_figure as _save

    views = _method_views(frame)
    if not views or "architecture" not in frame:
        return []
    words, symbol = _x_words(frame)
    x_label = f"{words} ${symbol}$"
    fig = new_figure((15, 8.4))
    axes = fig.subplots(2, 3).ravel()
    by_architecture = ((axes[1], "sparsity"), (axes[2], "test_error"), (axes[3], "cos_l1_margin"),
                       (axes[4], "cos_l2_margin"), (axes[5], "cos_min_norm"))
    for index, (label, view) in enumerate(views):
        color = _color(label, index)
        xs = view.xs(_only_method(view))
        points = [PanelData(view.name, view.frame[view.frame["x"] == x], view.raw[view.raw["x"] == x], view.flagged)
                  for x in xs]
        _draw(axes[0], xs, [sparsity_log_ratio(p) for p in points], color, label)
        for architecture, style in ((DIAGONAL, "o-"), (FULLY_CONNECTED, "s--")):
            name = architecture.replace("_", " ")
            for ax, metric in by_architecture:
                _draw(ax, xs, [_by_architecture(p, metric).get(architecture, {}) for p in points], color,
                      f"{label}, {name}", style)
    axes[0].axhspan(-FLAT_MARGIN, FLAT_MARGIN, color="#2ca02c", alpha=0.12, linewidth=0,
                    label=f"± log {FLAT_BAND:g}: NGD stays inside, GD ends above")
    axes[0].axhline(0, color="#555555", linewidth=0.8)
    axes[0].set(ylabel="log(sparsity fully connected / diagonal)",
                title="the verdict's effect: mean over seeds, 95% interval")
    axes[1].set(ylabel="sparsity $||w||_1^2 / ||w||_2^2$ (log scale)", yscale="log", title="sparsity by architecture")
    axes[2].set(ylabel="test error", title="test error by architecture")
    for ax, words_of in ((axes[3], "the l1 max-margin direction"), (axes[4], "the l2 max-margin direction"),
                         (axes[5], "the min-norm interpolant (n <= d)")):
        ax.axhline(1.0, color="#555555", linestyle="--", linewidth=1)
        ax.set(ylabel=f"cosine with {words_of}", title=f"limit direction: {words_of.split(' (')[0]}")
    for ax in axes:
        ax.set_xlabel(x_label)
        xs = sorted(set(frame["x"]))
        if _swept_column(frame) == "train":
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.grid(alpha=0.3)
        _legend(ax, 7)
    bottom = _footer(fig, _verdict_note(verdict), 230)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return _save(fig, out_stem)


def _quiet(plot):
    """Run a plot with numpy's expected warnings (means of empty slices, 0/0) silenced."""

    @functools.wraps(plot)
    def quiet(verdict, frame, out_stem, title):
        import warnings

        import numpy as np

        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return plot(verdict, frame, Path(out_stem), title)

    return quiet


# ------------------------------------------------------------------ the declarations
def _endpoint_by_method(name: str) -> str | None:
    """A panel's endpoint: GD's for GD's panel, NGD's for NGD's and its extensions' (keys named by method)."""
    head = name.split(",")[0]
    return head if head in (GD_PANEL, NGD_PANEL) else None


DISTANCE_WORDS = "largest distance of W's trajectory to depth 1's"

INVARIANCE = register_study(Study(
    name="ngd-invariance",
    paper=PAPER,
    claim="NGD is approximately invariant to the parametrization: its trajectories at different depths nearly "
          "coincide (the whole end-to-end W), while GD's do not",
    endpoints={
        NGD_PANEL: Endpoint(Rule(DISTANCE_WORDS, "equivalent", margin=INVARIANCE_MARGIN), distance_to_depth_one,
                             worst_effect=FLAGGED_DISTANCE),
        GD_PANEL: Endpoint(Rule(DISTANCE_WORDS, "increase", minimal_effect=INVARIANCE_MARGIN), distance_to_depth_one,
                          worst_effect=0.0),
    },
    panel_endpoint=_endpoint_by_method,
    about=_claim_panel,
    panels=_by_method,
    plot=_quiet(_plot_invariance),
    secondary={"training_outputs": Endpoint(
        Rule("largest distance of the training outputs' trajectory to depth 1's", "equivalent",
             margin=INVARIANCE_MARGIN), training_output_distance, worst_effect=FLAGGED_DISTANCE)},
    parameters={"invariance_margin": INVARIANCE_MARGIN, "flagged_distance": FLAGGED_DISTANCE},
    notes=("Distance of a run to the smallest depth's run with the same method and seed: max over the recorded "
           "checkpoints t of ||W_d(t) - W_1(t)||_F / max_t ||W_1(t)||_F; per seed the largest over the depths.",
           "NGD is the method of type ngd named like its type (the config's Fisher: see volumelab.studies.ngd); "
           "other NGD methods are extensions."),
))

INVARIANCE_WIDTH = register_study(Study(
    name="ngd-invariance-width",
    paper=PAPER,
    claim="NGD's invariance to depth improves as the network gets wider (sufficient, finite over-parametrization)",
    endpoints={"fall": Endpoint(
        Rule("fall of the distance to depth 1's trajectory from the smallest to the largest width", "increase"),
        distance_fall_with_width, worst_effect=0.0)},
    about=lambda name: name == NGD_PANEL,
    panel_endpoint=lambda name: "fall" if name.split(",")[0] in (GD_PANEL, NGD_PANEL) else None,
    panels=_by_method,
    plot=_quiet(_plot_invariance_width),
    secondary={"near_at_largest": Endpoint(
        Rule("distance to depth 1's trajectory at the largest width", "equivalent", margin=INVARIANCE_MARGIN),
        distance_at_largest_width, worst_effect=FLAGGED_DISTANCE)},
    parameters={"invariance_margin": INVARIANCE_MARGIN, "flagged_distance": FLAGGED_DISTANCE},
    notes=("Distances as in ngd-invariance, each run against the smallest depth's run with the same width and "
           "seed; per seed the smallest fall over the depths above the smallest. GD's panel is for comparison.",),
))

LOSS_RATIO_WORDS = "log(generalization loss at the smallest depth / at the largest)"

COMPLETION = register_study(Study(
    name="ngd-completion",
    paper=PAPER,
    claim="On deep matrix completion GD's generalization improves with depth while NGD's stays at the depth-1 "
          "level (depth gives NGD no low-rank bias)",
    endpoints={
        GD_PANEL: Endpoint(Rule(LOSS_RATIO_WORDS, "increase", minimal_effect=FLAT_MARGIN),
                             loss_log_ratio_over_depth, worst_effect=0.0),
        NGD_PANEL: Endpoint(Rule(LOSS_RATIO_WORDS, "equivalent", margin=FLAT_MARGIN), loss_log_ratio_over_depth,
                         worst_effect=FLAGGED_LOG_RATIO),
    },
    panel_endpoint=_endpoint_by_method,
    about=_claim_panel,
    panels=_by_method,
    plot=_quiet(_plot_completion),
    secondary={"rank": Endpoint(
        Rule("log(effective rank of W at the smallest depth / at the largest)", "increase"),
        rank_log_ratio_over_depth, worst_effect=0.0)},
    parameters={"flat_band": FLAT_BAND, "flagged_log_ratio": FLAGGED_LOG_RATIO},
    notes=(f"A log ratio within ± log {FLAT_BAND:g} = ± {FLAT_MARGIN:.3f} is a change by less than "
           f"{FLAT_BAND - 1:.0%} either way: NGD must stay inside it, GD must leave it on the side of a lower loss.",),
))

SPARSITY_WORDS = "log(sparsity of the fully connected net's w / the diagonal network's)"

SPARSE = register_study(Study(
    name="ngd-sparse",
    paper=PAPER,
    claim="On separable classification with a sparse teacher GD's solution depends on the architecture (sparser "
          "on a deep diagonal network than on a fully connected one) while NGD's does not",
    endpoints={
        GD_PANEL: Endpoint(Rule(SPARSITY_WORDS, "increase", minimal_effect=FLAT_MARGIN), sparsity_log_ratio,
                            worst_effect=0.0),
        NGD_PANEL: Endpoint(Rule(SPARSITY_WORDS, "equivalent", margin=FLAT_MARGIN), sparsity_log_ratio,
                         worst_effect=FLAGGED_LOG_RATIO),
    },
    panel_endpoint=_endpoint_by_method,
    about=_claim_panel,
    panels=_by_method_and_point,
    plot=_quiet(_plot_sparse),
    secondary={
        "test_error": Endpoint(Rule("test error, fully connected minus diagonal", "equivalent", margin=ERROR_MARGIN),
                               error_rate_gap, worst_effect=FLAGGED_ERROR_GAP),
        "margin": Endpoint(Rule("share of the max l2 margin, fully connected minus diagonal", "increase"),
                           margin_share_gap, worst_effect=0.0),
        "l1_direction": Endpoint(Rule("cosine with the l1 max-margin direction, diagonal minus fully connected",
                                      "increase"), l1_direction_gap, worst_effect=0.0),
    },
    parameters={"flat_band": FLAT_BAND, "error_margin": ERROR_MARGIN, "flagged_log_ratio": FLAGGED_LOG_RATIO,
                "flagged_error_gap": FLAGGED_ERROR_GAP},
    notes=("Sparsity S = ||w||_1^2 / ||w||_2^2 of the end-to-end linear predictor (1: one non-zero entry; the "
           "number of features: a flat w). One panel per method and point of the sweep; every panel of GD and "
           "NGD must hold.",
           "Share of the max l2 margin: the run's normalized l2 training margin over the largest l2 margin of its "
           "training set (a hard-margin SVM without bias). Reported only: no finite-time share follows from the "
           "paper (GD's direction approaches the max-margin one like 1/log t); an earlier rule's 0.9 was set after "
           "the results had been seen and is not used.",
           "Limit directions: each run reports the cosine of its predictor with the l2 and l1 max-margin directions "
           "and the minimum-norm interpolant of its training set (volumelab.diagnostics.max_margin), plotted per "
           "architecture with their spread over seeds; the l1 one's architecture gap is reported (GD's deep "
           "diagonal net is expected to head for the l1 margin, its fully connected net for the l2 one)."),
))


# ================================================================== ngd-mlp: invariance on nonlinear MLPs
#: The parametrization every other one is compared with.
REFERENCE_PARAMETRIZATION = "standard"
PARAMETRIZATION, DEPTH = "parametrization", "depth"


# ------------------------------------------------------------------ distances
def mlp_trajectory_distances(run, reference) -> dict[str, float]:
    """Relative distances of two MLP runs' recorded trajectories (``trajectory_every``).

    Args:
        run, reference: Mappings with ``trajectory`` ``(K, n + n_test)`` (the outputs on ``[X_train;
            X_test]``), ``trajectory_train`` ``(K, n)`` and ``trajectory_steps`` ``(K,)``.

    Returns:
        ``test``: ``max_t ||f_run(t) - f_ref(t)|| / max_t ||f_ref(t)||`` on the test points; ``train``: the
        same on the training points; ``curve``: the test-point distance at every checkpoint (over the same
        scale). :func:`~volumelab.studies.ngd.trajectory_distances` on the test part.

    Raises:
        ValueError: the two runs recorded different checkpoints.
    """
    import numpy as np

    def test_part(arrays):
        count = np.asarray(arrays["trajectory_train"]).shape[-1]
        whole = np.asarray(arrays["trajectory"], dtype=float).reshape(len(arrays["trajectory"]), -1)
        return {**arrays, "trajectory": whole[:, count:]}

    a, b = test_part(run), test_part(reference)
    distances = trajectory_distances(a, b)
    scale = max(float(np.linalg.norm(b["trajectory"], axis=1).max()), 1e-300)
    return {"test": distances["whole"], "train": distances["train"],
            "curve": np.linalg.norm(a["trajectory"] - b["trajectory"], axis=1) / scale}


def _coordinate(row, name: str):
    """A run's grid coordinate ``model.<name>``: its frame column, else its stored config's coordinates."""
    value = row.get(name)
    if value is not None and not (isinstance(value, float) and math.isnan(value)):
        return value
    config = row.get("config")
    if isinstance(config, dict):
        coords = config.get("coords") or {}
        if f"model.{name}" in coords:
            return coords[f"model.{name}"]
        model = config.get("model") or {}
        if name in model:
            return model[name]
    return None


def mlp_distances(panel: PanelData) -> "pd.DataFrame":
    """Every comparison the study reads, one row each.

    ``kind == "parametrization"``: each ``ntk`` or ``mup`` run against the ``standard`` run of the same
    method, depth, width and seed; ``kind == "depth"``: each run of the largest depth against the run of
    the smallest depth with the same method, parametrization, width and seed. Flagged runs (and runs
    whose reference is flagged or has no trajectory) have no row.

    Returns:
        Columns ``method, seed, width, depth, parametrization, kind, test, train, steps, curve``
        (``width`` is the row's x).
    """
    import numpy as np
    import pandas as pd

    columns = ["method", "seed", "width", "depth", "parametrization", "kind", "test", "train", "steps", "curve"]
    raw = panel.raw
    if not len(raw):
        return pd.DataFrame(columns=columns)
    source = _trajectory_source(raw)
    runs = {}
    for _, row in raw.iterrows():
        record = dict(row)
        method, x, seed = str(record["method"]), record["x"], int(record["seed"])
        if (method, x, seed) in panel.flagged:
            continue
        parametrization, depth = _coordinate(record, PARAMETRIZATION), _coordinate(record, DEPTH)
        if parametrization is None or depth is None:
            continue
        arrays = source(record)
        if arrays is not None:
            runs[(method, seed, float(x), float(depth), str(parametrization))] = arrays
    depths = sorted({key[3] for key in runs})
    out = []
    for (method, seed, width, depth, parametrization), arrays in sorted(runs.items()):
        comparisons = []
        if parametrization != REFERENCE_PARAMETRIZATION:
            comparisons.append(("parametrization", (method, seed, width, depth, REFERENCE_PARAMETRIZATION)))
        if len(depths) > 1 and depth == depths[-1]:
            comparisons.append(("depth", (method, seed, width, depths[0], parametrization)))
        for kind, key in comparisons:
            reference = runs.get(key)
            if reference is None:
                continue
            distances = mlp_trajectory_distances(arrays, reference)
            out.append({"method": method, "seed": seed, "width": width, "depth": depth,
                        "parametrization": parametrization, "kind": kind, "test": distances["test"],
                        "train": distances["train"], "steps": np.asarray(arrays["trajectory_steps"]),
                        "curve": distances["curve"]})
    return pd.DataFrame.from_records(out, columns=columns)


def _widths(panel: PanelData) -> list[float]:
    return [float(x) for x in panel.xs(_only_method(panel))]


def _largest_by_seed(panel: PanelData, kind: str, column: str, width: float) -> dict[int, float]:
    """Per seed: the largest ``column`` distance of the ``kind`` comparisons at ``width`` (over depths and
    parametrizations); seeds with a flagged run at that width are left out (the mechanism's worst case)."""
    distances = mlp_distances(panel)
    flagged = _flagged_seeds(panel, {width})
    rows = distances[(distances["kind"] == kind) & (distances["width"] == width)] if len(distances) else distances
    out: dict[int, float] = {}
    for seed, value in zip(rows["seed"], rows[column]):
        if math.isfinite(value) and int(seed) not in flagged:
            out[int(seed)] = max(out.get(int(seed), -math.inf), float(value))
    return out


def parametrization_distance_at_largest_width(panel: PanelData) -> dict[int, float]:
    """Per seed: at the largest width, the largest test-point distance of an ``ntk`` or ``mup`` run to the
    ``standard`` run (same method, depth, seed), over the depths."""
    widths = _widths(panel)
    return _largest_by_seed(panel, "parametrization", "test", widths[-1]) if widths else {}


def training_distance_at_largest_width(panel: PanelData) -> dict[int, float]:
    """Per seed: the same on the training points."""
    widths = _widths(panel)
    return _largest_by_seed(panel, "parametrization", "train", widths[-1]) if widths else {}


def mlp_distance_fall_with_width(panel: PanelData) -> dict[int, float]:
    """Per seed: the largest parametrization distance (test points) at the smallest width minus at the largest."""
    widths = _widths(panel)
    if len(widths) < 2:
        return {}
    first = _largest_by_seed(panel, "parametrization", "test", widths[0])
    last = _largest_by_seed(panel, "parametrization", "test", widths[-1])
    return {seed: first[seed] - last[seed] for seed in first.keys() & last.keys()}


def depth_distance_at_largest_width(panel: PanelData) -> dict[int, float]:
    """Per seed: at the largest width, the largest test-point distance of the deepest run to the shallowest
    (same method, parametrization, seed), over the parametrizations."""
    widths = _widths(panel)
    return _largest_by_seed(panel, "depth", "test", widths[-1]) if widths else {}


# ------------------------------------------------------------------ plot
def _series(distances: "pd.DataFrame", kind: str, widths: list[float], depth: float | None) -> list[dict[int, float]]:
    """Per width ``{seed: largest test-point distance}`` of the ``kind`` comparisons (at ``depth``, if given)."""
    rows = distances[distances["kind"] == kind]
    if depth is not None:
        rows = rows[rows["depth"] == depth]
    series = []
    for width in widths:
        part = rows[rows["width"] == width]
        values: dict[int, float] = {}
        for seed, value in zip(part["seed"], part["test"]):
            if math.isfinite(value):
                values[int(seed)] = max(values.get(int(seed), -math.inf), float(value))
        series.append(values)
    return series


def _plot(verdict, frame: "pd.DataFrame", out_stem: Path, title: str) -> list[Path]:
    from ..plotting.figures import new_figure, save_figure

    views = [(label, view, mlp_distances(view)) for label, view in _method_views(frame)]
    views = [(label, view, d) for label, view, d in views if len(d)]
    if not views:
        return []
    depths = sorted({float(d) for _, _, distances in views
                     for d in distances.loc[distances["kind"] == "parametrization", "depth"]})
    widths = sorted({float(w) for _, _, distances in views for w in distances["width"]})
    fig = new_figure((4.6 * (len(depths) + 1), 4.5))
    axes = fig.subplots(1, len(depths) + 1, squeeze=False)[0]
    for ax, depth in zip(axes, depths):
        for index, (label, _, distances) in enumerate(views):
            _draw(ax, widths, _series(distances, "parametrization", widths, depth), _color(label, index), label)
        ax.set(xlabel="width $k$", ylabel="largest distance to the standard run (test points)",
               title=f"depth {depth:g}: ntk and mup against standard")
    ax = axes[-1]
    for index, (label, _, distances) in enumerate(views):
        _draw(ax, widths, _series(distances, "depth", widths, None), _color(label, index), label)
    shallow, deep = (depths[0], depths[-1]) if depths else (2, 3)
    ax.set(xlabel="width $k$", ylabel="largest distance between depths (test points)",
           title=f"depth {deep:g} against depth {shallow:g} (reported)")
    top = max(a.get_ylim()[1] for a in axes)
    for ax in axes:
        ax.axhspan(0, INVARIANCE_MARGIN, color="#2ca02c", alpha=0.08, linewidth=0)
        ax.axhline(INVARIANCE_MARGIN, color="#555555", linestyle="--", linewidth=1,
                   label=f"margin {INVARIANCE_MARGIN:g}: NGD within, GD beyond")
        ax.set_xscale("log", base=2)
        ax.set_xticks(widths, [f"{w:g}" for w in widths])
        ax.set_ylim(0, top)
        ax.grid(alpha=0.3)
        _legend(ax, 7)
    bottom = _footer(fig, "Mean over seeds with 95% t intervals; per seed the largest distance over the compared "
                     "runs. The verdict reads the largest width. " + _verdict_note(verdict),
                     int(16 * 4.6 * (len(depths) + 1)))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return save_figure(fig, out_stem)


# ------------------------------------------------------------------ the declaration
PARAMETRIZATION_WORDS = ("largest distance of the test-point trajectory of an ntk or mup run to the standard run's, "
                         "at the largest width")

MLP_INVARIANCE = register_study(Study(
    name="ngd-mlp",
    paper=PAPER,
    claim="NGD's invariance to the parametrization: its \"findings extend to nonlinear networks with sufficient but "
          "finite over-parametrization\"; on wide tanh MLPs started from the same function, NGD's function-space "
          "trajectories under the standard, ntk and mup parametrizations nearly coincide, while GD's do not",
    endpoints={
        NGD_PANEL: Endpoint(Rule(PARAMETRIZATION_WORDS, "equivalent", margin=INVARIANCE_MARGIN),
                            parametrization_distance_at_largest_width, worst_effect=FLAGGED_DISTANCE),
        GD_PANEL: Endpoint(Rule(PARAMETRIZATION_WORDS, "increase", minimal_effect=INVARIANCE_MARGIN),
                           parametrization_distance_at_largest_width, worst_effect=0.0),
    },
    panel_endpoint=_endpoint_by_method,
    about=_claim_panel,
    panels=_by_method,
    plot=_quiet(_plot),
    secondary={
        "training_points": Endpoint(
            Rule("the same distance on the training points", "equivalent", margin=INVARIANCE_MARGIN),
            training_distance_at_largest_width, worst_effect=FLAGGED_DISTANCE),
        "fall_with_width": Endpoint(
            Rule("fall of that distance from the smallest to the largest width", "increase"),
            mlp_distance_fall_with_width, worst_effect=0.0),
        "depths": Endpoint(
            Rule("largest distance of the deepest run's test-point trajectory to the shallowest's (same "
                 "parametrization), at the largest width", "equivalent", margin=INVARIANCE_MARGIN),
            depth_distance_at_largest_width, worst_effect=FLAGGED_DISTANCE),
    },
    parameters={"invariance_margin": INVARIANCE_MARGIN, "flagged_distance": FLAGGED_DISTANCE,
                "reference_parametrization": REFERENCE_PARAMETRIZATION},
    notes=("Distance of a run to the standard run of the same method, depth, width and seed: max over the recorded "
           "checkpoints t of ||f(t) - f_standard(t)|| / max_t ||f_standard(t)|| on the test points; per seed the "
           "largest over ntk and mup and the depths, at the largest width. Every run starts from the zero function "
           "with the same effective weights (initialization: antisymmetric).",
           "NGD is the method of type ngd named like its type (the config's population Fisher); other NGD methods "
           "are extensions."),
))
