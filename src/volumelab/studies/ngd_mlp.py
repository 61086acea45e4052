"""``ngd-mlp``: NGD's invariance to the parametrization on nonlinear networks (Kerekes, Mészáros, Huszár, arXiv 2111.11542).

The paper's invariance findings "extend to nonlinear networks with sufficient but finite
over-parametrization". Measured on tanh MLPs of growing width on a teacher regression task
(``configs/ngd-mlp.yaml``), under the ``standard``, ``ntk`` and ``mup`` parametrizations
(:mod:`volumelab.models.mlp`) at depths 2 and 3. Every run starts from the zero function with the
same effective weights under every parametrization (``initialization: antisymmetric``,
:meth:`~volumelab.models.MLPModel.initialize_antisymmetric`), so the runs of one depth, width and
seed differ only in how their optimizer moves the weights, and every depth starts from the same
function. Each run records its outputs on the training and test points (``trajectory_every``).

**Which NGD.** As in :mod:`volumelab.studies.ngd`: NGD is the method of type ``ngd`` named like its
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
:data:`~volumelab.studies.ngd.FLAGGED_DISTANCE` for an equivalence, no change (0) for GD's
"above" and for the fall.

**Rule** declared on 2026-12-06, before the study's first full run (dated in ``rule_history.json``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..evidence import Endpoint, PanelData, Rule, Study, register_study
from .ngd import (
    FLAGGED_DISTANCE, GD_PANEL, INVARIANCE_MARGIN, NGD_PANEL, PAPER, _by_method, _claim_panel, _color, _draw,
    _endpoint_by_method, _flagged_seeds, _footer, _legend, _method_views, _only_method, _quiet, _trajectory_source,
    _verdict_note, trajectory_distances,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MLP_INVARIANCE", "REFERENCE_PARAMETRIZATION", "depth_distance_at_largest_width", "distance_fall_with_width",
           "mlp_distances", "parametrization_distance_at_largest_width", "mlp_trajectory_distances",
           "training_distance_at_largest_width"]

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


def distance_fall_with_width(panel: PanelData) -> dict[int, float]:
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
            distance_fall_with_width, worst_effect=0.0),
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
