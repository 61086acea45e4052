"""The ngd-mlp study (arXiv 2111.11542 on tanh MLPs) on hand-made sweeps with known distances, its plot, its
packaged config, and an end-to-end tiny sweep that reads its trajectories back from the store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from volumelab.evidence import FAILS, HOLDS, INCONCLUSIVE, get_study, judge
from volumelab.experiments import figure_config_path
from volumelab.experiments.config import load_sweep, resolve_points
from volumelab.studies.ngd import INVARIANCE_MARGIN, RESULTS_DIR_ATTR
from volumelab.studies.ngd import mlp_distances, mlp_trajectory_distances

SEEDS = 6
STEPS = np.arange(0, 50, 10)
NUM_TRAIN, NUM_TEST = 5, 12
WIDTHS = (8, 64)
METHODS = (("gd", "gd", None), ("ngd", "ngd", "population"), ("ngd_train", "ngd", "train"))


def _trajectory(seed: int, apart: float, deeper: float) -> dict:
    """The standard depth-2 run ``f(t) = (t/T) f_s``, moved by ``apart`` (a non-standard parametrization) and by
    ``deeper`` (depth 3) along two fixed unit directions, each times ``(t/T) max ||f||``: a run's distance to the
    standard run of its depth is ``apart`` where that run is the plain one (depth 2)."""
    generator = np.random.default_rng(seed)
    base = generator.standard_normal(NUM_TRAIN + NUM_TEST)
    u, v = generator.standard_normal((2, NUM_TRAIN + NUM_TEST))
    u, v = u / np.linalg.norm(u[NUM_TRAIN:]), v / np.linalg.norm(v[NUM_TRAIN:])
    u[:NUM_TRAIN] *= np.linalg.norm(base[:NUM_TRAIN]) / np.linalg.norm(u[:NUM_TRAIN])
    v[:NUM_TRAIN] *= np.linalg.norm(base[:NUM_TRAIN]) / np.linalg.norm(v[:NUM_TRAIN])
    u[NUM_TRAIN:] *= np.linalg.norm(base[NUM_TRAIN:])
    v[NUM_TRAIN:] *= np.linalg.norm(base[NUM_TRAIN:])
    fraction = (STEPS / STEPS[-1])[:, None]
    outputs = fraction * (base + apart * u + deeper * v)
    return {"trajectory": outputs, "trajectory_train": outputs[:, :NUM_TRAIN], "trajectory_steps": STEPS}


def mlp_frame(apart, deeper=lambda method, width, seed: 0.02, *, seeds=SEEDS, statuses=None) -> pd.DataFrame:
    """``apart(method, width, seed)``: the distance of an ntk or mup run to its standard run; ``deeper``: of a
    depth-3 run to the depth-2 run."""
    rows = []
    for method, method_type, fisher in METHODS:
        for width in WIDTHS:
            for depth in (2, 3):
                for parametrization in ("standard", "ntk", "mup"):
                    for seed in range(seeds):
                        moved = 0.0 if parametrization == "standard" else apart(method, width, seed)
                        shift = 0.0 if depth == 2 else deeper(method, width, seed)
                        status = (statuses or {}).get((method, width, depth, parametrization, seed), "completed")
                        rows.append({"method": method, "method_type": method_type, "x": width, "width": width,
                                     "depth": depth, "parametrization": parametrization, "seed": seed,
                                     "status": status, "gen_loss": 0.1, **_trajectory(seed, moved, shift),
                                     "config": {"method": {"name": method, **({"fisher": fisher} if fisher else {})},
                                                "coords": {"model.parametrization": parametrization,
                                                           "model.depth": depth, "model.width": width}}})
    return pd.DataFrame(rows)


def _apart(ngd=(0.06, 0.02), gd=(0.4, 0.5), ngd_train=(0.03, 0.03)):
    """Distances at the smallest and the largest width, with a small spread over seeds."""
    def distance(method, width, seed):
        small, large = {"gd": gd, "ngd": ngd, "ngd_train": ngd_train}[method]
        return (small if width == WIDTHS[0] else large) * (1 + 0.05 * ((seed % 3) - 1))

    return distance


def _panels(verdict) -> dict:
    return {p.panel: p for p in verdict.panels}


def test_mlp_trajectory_distances_read_the_test_part_against_a_plain_loop():
    generator = np.random.default_rng(0)
    run, ref = ({"trajectory": generator.standard_normal((5, 9)), "trajectory_steps": STEPS} for _ in range(2))
    for arrays in (run, ref):
        arrays["trajectory_train"] = arrays["trajectory"][:, :4]
    got = mlp_trajectory_distances(run, ref)
    largest = max(np.sqrt(np.sum(row[4:] ** 2)) for row in ref["trajectory"])
    worst = max(np.sqrt(np.sum((a[4:] - b[4:]) ** 2)) for a, b in zip(run["trajectory"], ref["trajectory"]))
    assert got["test"] == pytest.approx(worst / largest, rel=1e-12)
    assert got["train"] == pytest.approx(max(np.sqrt(np.sum((a[:4] - b[:4]) ** 2)) for a, b in
                                             zip(run["trajectory"], ref["trajectory"]))
                                         / max(np.sqrt(np.sum(row[:4] ** 2)) for row in ref["trajectory"]), rel=1e-12)
    assert got["curve"].max() == pytest.approx(got["test"], rel=1e-12)


def test_the_distances_pair_each_run_with_its_standard_and_its_depth_two_run():
    frame = mlp_frame(_apart())
    from volumelab.evidence import panel_data

    distances = mlp_distances(panel_data(frame[frame["method"] == "ngd"]))
    # ntk and mup at both depths and widths against standard; every parametrization at depth 3 against depth 2.
    assert (distances["kind"] == "parametrization").sum() == 2 * 2 * 2 * SEEDS
    assert (distances["kind"] == "depth").sum() == 3 * 2 * SEEDS
    plain = distances[(distances["kind"] == "parametrization") & (distances["depth"] == 2)
                      & (distances["width"] == 64) & (distances["seed"] == 0)]
    assert plain["test"].tolist() == pytest.approx([0.02 * 0.95] * 2, rel=1e-9)
    assert plain["train"].tolist() == pytest.approx([0.02 * 0.95] * 2, rel=1e-9)
    deeper = distances[(distances["kind"] == "depth") & (distances["parametrization"] == "standard")]
    assert deeper["test"].tolist() == pytest.approx([0.02] * len(deeper), rel=1e-9)


def test_holds_when_ngd_trajectories_coincide_and_gds_do_not():
    verdict = judge(get_study("ngd-mlp"), mlp_frame(_apart()))
    panels = _panels(verdict)
    assert verdict.outcome == HOLDS, [p.decision.line for p in verdict.panels]
    assert {name: p.outcome for name, p in panels.items()} == {
        "GD": HOLDS, "NGD": HOLDS, "NGD, fisher train (extension)": HOLDS}
    assert not panels["NGD, fisher train (extension)"].about
    ngd = panels["NGD"]
    assert ngd.decision.effect.estimate == pytest.approx(0.02, rel=0.06)  # the largest width's distance
    assert ngd.secondary["training_points"].outcome == HOLDS
    assert ngd.secondary["fall_with_width"].outcome == HOLDS  # 0.06 -> 0.02
    assert ngd.secondary["fall_with_width"].effect.estimate == pytest.approx(0.04, rel=0.06)
    assert ngd.secondary["depths"].outcome == HOLDS
    assert panels["GD"].secondary["fall_with_width"].outcome == FAILS  # GD's distance grows with width here


def test_fails_when_ngd_trajectories_move_apart_and_is_inconclusive_at_the_margin():
    apart = judge(get_study("ngd-mlp"), mlp_frame(_apart(ngd=(0.6, 0.5))))
    assert apart.outcome == FAILS and _panels(apart)["NGD"].outcome == FAILS
    same_gd = judge(get_study("ngd-mlp"), mlp_frame(_apart(gd=(0.02, 0.02))))
    assert _panels(same_gd)["GD"].outcome == FAILS and same_gd.outcome == FAILS

    def around(method, width, seed):
        return INVARIANCE_MARGIN * (1 + 0.5 * ((seed % 3) - 1)) if method == "ngd" else 0.5

    edge = judge(get_study("ngd-mlp"), mlp_frame(around))
    assert _panels(edge)["NGD"].outcome == INCONCLUSIVE and edge.outcome == INCONCLUSIVE
    # Depths apart are reported, never deciding.
    deep = judge(get_study("ngd-mlp"), mlp_frame(_apart(), deeper=lambda m, w, s: 0.5 + 0.01 * s))
    assert deep.outcome == HOLDS and _panels(deep)["NGD"].secondary["depths"].outcome == FAILS


def test_flagged_runs_at_the_largest_width_decide_through_their_worst_case():
    statuses = {("ngd", 64, 3, "mup", seed): "diverged" for seed in (0, 1)}
    verdict = judge(get_study("ngd-mlp"), mlp_frame(_apart(), seeds=9, statuses=statuses))
    ngd = _panels(verdict)["NGD"].decision
    assert ngd.effect.n == 7 and ngd.flagged == 2
    assert ngd.outcome == INCONCLUSIVE and ngd.worst.effect.estimate > INVARIANCE_MARGIN
    # A flagged standard run (the reference) takes its seed's comparisons with it.
    reference = {("ngd", 64, 2, "standard", 0): "solve_failed"}
    ngd = _panels(judge(get_study("ngd-mlp"), mlp_frame(_apart(), seeds=9, statuses=reference)))["NGD"].decision
    assert ngd.effect.n == 8 and ngd.flagged == 1
    # A flagged run at the smallest width does not touch the endpoint, only the fall.
    small = {("ngd", 8, 2, "ntk", 0): "diverged"}
    panel = _panels(judge(get_study("ngd-mlp"), mlp_frame(_apart(), seeds=9, statuses=small)))["NGD"]
    assert panel.decision.effect.n == 9 and panel.decision.flagged == 0 and panel.outcome == HOLDS
    assert panel.secondary["fall_with_width"].flagged == 1
    # A flagged GD run counts as no distance for GD's claimed one, and leaves NGD's panel alone.
    gd = judge(get_study("ngd-mlp"), mlp_frame(_apart(), statuses={("gd", 64, 2, "ntk", 0): "diverged"}))
    assert _panels(gd)["GD"].decision.flagged == 1 and _panels(gd)["NGD"].decision.flagged == 0


def test_without_trajectories_or_with_two_seeds_it_is_inconclusive():
    frame = mlp_frame(_apart()).drop(columns=["trajectory", "trajectory_train", "trajectory_steps"])
    verdict = judge(get_study("ngd-mlp"), frame)
    assert verdict.outcome == INCONCLUSIVE
    assert all("no seed has the effect" in p.decision.reason for p in verdict.panels)
    assert judge(get_study("ngd-mlp"), mlp_frame(_apart(), seeds=2)).outcome == INCONCLUSIVE


@pytest.mark.parametrize("statuses", [None, "all diverged"])
def test_the_plot_draws_what_the_verdict_reads(statuses, tmp_path, recwarn):
    frame = mlp_frame(_apart())
    if statuses:
        frame = frame.assign(status="diverged")
    study = get_study("ngd-mlp")
    paths = study.plot(judge(study, frame), frame, tmp_path / "plots" / "ngd-mlp-claim", "ngd-mlp")
    if statuses:
        assert paths == []  # nothing to draw
    else:
        assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.is_file() for p in paths)
    assert not [str(w.message) for w in recwarn]


def test_the_packaged_config_runs_the_papers_ngd_from_one_start():
    config = load_sweep(figure_config_path("ngd-mlp"))
    assert config.claim == "ngd-mlp" and len(config.seed_list) >= 8
    methods = {name: spec for name, spec in config.methods.items()}
    settings = {name: (spec if isinstance(spec, dict) else spec.model_dump()) for name, spec in methods.items()}
    assert settings["ngd"]["fisher"] == "population" and settings["ngd_train"]["fisher"] == "train"
    assert {s["initialization"] for s in settings.values()} == {"antisymmetric"}
    assert settings["ngd"]["lr"] == settings["ngd_train"]["lr"]
    for scale in config.scale_names():
        points = resolve_points(config, scale)
        assert len(points) == 3 * 2 * 3


def test_a_tiny_sweep_reads_its_trajectories_back_from_the_store(tmp_path):
    from tiny_sweep import write_config

    from volumelab.cli import main
    from volumelab.experiments.results import load_frame

    path = write_config(tmp_path, """\
        name: tiny-ngd-mlp
        claim: ngd-mlp
        x: model.width
        problem: {kind: supervised, data: teacher, train: 6, test: 8, features: 1, loss: squared}
        model: {kind: mlp, width: 4, depth: 2, activation: tanh}
        methods:
          ngd: {fisher: population, unlabeled: 16, lr: 0.02, steps: 6, init_scale: 2.0,
                initialization: antisymmetric, trajectory_every: 3}
          gd: {lr: 0.02, steps: 6, init_scale: 2.0, initialization: antisymmetric, trajectory_every: 3}
        grid:
          model.parametrization: [standard, ntk]
          model.depth: [2, 3]
          model.width: [2, 4]
        seeds: 2
        """)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    assert "sufficient but finite over-parametrization" in (out / "report.md").read_text(encoding="utf-8")
    frame = load_frame(out)
    frame.attrs[RESULTS_DIR_ATTR] = str(out)
    verdict = judge(get_study("ngd-mlp"), frame)
    for panel in verdict.panels:  # both seeds' distances were read back: n = 2, too few to decide
        assert panel.decision.effect.n == 2 and "too few seeds (n = 2" in panel.decision.reason
