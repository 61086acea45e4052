"""Verdicts from data, and the plots and report written for a sweep."""

from __future__ import annotations

import pandas as pd
import pytest

from volumelab.experiments import load_sweep, run_sweep
from volumelab.plotting import summarize
from volumelab.evidence import get_study, judge
from volumelab.plotting.report import write_sweep_outputs

from tiny_sweep import TINY, write_config


def test_outputs_of_a_sweep(tmp_path):
    text = TINY.replace("  model.width: [4, 8]\n", "  model.width: [4, 8]\n").replace(
        "samples: 3000", "samples: 400").replace("eps: 0.1", "eps: 0.02")
    config = load_sweep(write_config(tmp_path, text))
    outcome = run_sweep(config, out_dir=tmp_path / "out")
    section = write_sweep_outputs(outcome.plan, tmp_path / "out")
    out = tmp_path / "out"
    for name in ("results.csv", "report.md", "report.html", "plots/tiny.png", "plots/tiny.pdf"):
        assert (out / name).stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "Rule (digest" in report and "plots/tiny.png" in report and "plots/tiny-verdict.png" in report
    assert report.index("**Paper's claim:**") < report.index("plots/tiny.png")  # the verdict reads first
    verdict_lines = [line for line in report.splitlines() if line.startswith(("- linear:", "- tanh:"))]
    assert verdict_lines and all(": inconclusive:" in line for line in verdict_lines)  # 3 seeds: never holds/fails
    assert "arXiv 2506.03931" in report
    assert "GD train loss (median)" in report
    assert "G&C median ± SE [IQR] (seeds with a loss)" in report and "G&C / prior ± SE" in report
    assert "GD did not fit the training data" in report  # 20 steps from a small initialization
    frame = pd.read_csv(out / "results.csv")
    no_acceptance = int(frame[frame["method"] == "gnc"]["gen_loss"].isna().sum())
    assert section.missing["gnc"] == no_acceptance
    if no_acceptance:
        assert f"gnc: {no_acceptance}" in report
    page = (out / "report.html").read_text()
    assert "<img src='data:image/png;base64," in page and "<details>" in page  # the file alone is the report


def test_report_says_where_gd_did_not_fit():
    from volumelab.plotting.report.builder import FIT_TRAIN_LOSS, ReportSection, _fit_sentence, trainer_fit

    rows = []
    for seed in range(3):
        for depth, train in ((2, 1e-5), (8, 3e-2)):
            rows.append(("tanh", "gd", depth, seed, 0.01, train, "gd"))
            rows.append(("tanh", "gnc", depth, seed, 0.05, 0.005, "gnc"))
    frame = pd.DataFrame(rows, columns=["activation", "method", "x", "seed", "gen_loss", "train_loss", "method_type"])
    table = trainer_fit(frame, "activation")
    assert list(table["x"]) == [2, 8] and set(table["method"]) == {"gd"}
    section = ReportSection(name="s", title="", description="", scale="quick", note="", image="", x_name="depth",
                            panel="activation", summary=pd.DataFrame(), verdict=None, runs=12, missing={},
                            seconds=0.0, fit=table)
    sentence = _fit_sentence(section)
    assert f"above {FIT_TRAIN_LOSS:g}" in sentence and "tanh depth 8 (0.03)" in sentence and "2 (" not in sentence
    section.fit = trainer_fit(frame[frame["x"] == 2], "activation")
    assert _fit_sentence(section).startswith("GD fit the training data at every point")
    section.fit = trainer_fit(frame[frame["method"] == "gnc"], "activation")
    assert _fit_sentence(section) is None


# ---------------------------------------------------------------- seeds without a loss, standard errors, chance


def _frame(rows, stderr_fraction=0.0):
    """Rows ``(panel, method, x, seed, gen_loss)``; each run's standard error is ``stderr_fraction`` of its loss."""
    frame = pd.DataFrame(rows, columns=["activation", "method", "x", "seed", "gen_loss"])
    frame["gen_loss_stderr"] = frame["gen_loss"] * stderr_fraction
    frame.loc[frame["method"] == "gd", "gen_loss_stderr"] = float("nan")  # GD rows have none
    frame["accepted"] = 10
    return frame


def test_summary_counts_seeds_and_gives_the_standard_error_of_the_median():
    import math

    losses = [0.10, 0.12, 0.14, 0.20]
    rows = [("tanh", "gnc", 5, seed, loss) for seed, loss in enumerate(losses)]
    rows += [("tanh", "gnc", 5, 4, None), ("tanh", "gnc", 5, 5, None)]
    summary = summarize(_frame(rows, stderr_fraction=0.1), "activation")
    row = summary.iloc[0]
    assert (row["runs"], row["with_loss"], row["missing"]) == (6, 4, 2)
    spread = (pd.Series(losses).quantile(0.75) - pd.Series(losses).quantile(0.25)) / 1.349
    run_variance = sum((0.1 * loss) ** 2 for loss in losses) / 4
    assert math.isclose(row["median_stderr"], math.sqrt(math.pi / 2) * math.sqrt(spread ** 2 + run_variance) / 2)
    one = summarize(_frame([("tanh", "gnc", 5, 0, 0.1), ("tanh", "gnc", 5, 1, None)]), "activation")
    assert math.isnan(one.iloc[0]["median_stderr"])  # one seed: the spread between seeds is unknown


def _width_frame(accepted_at_largest):
    """8 seeds, widths 5 and 160; at width 160 only ``accepted_at_largest`` seeds accepted a draw."""
    rows = []
    for seed in range(8):
        for width in (5, 160):
            gnc = 0.10 + 0.002 * seed if width == 5 else (0.235 + 0.002 * seed if seed < accepted_at_largest else None)
            rows += [("linear", "gnc", width, seed, gnc), ("linear", "prior", width, seed, 0.25 + 0.001 * seed),
                     ("linear", "gd", width, seed, 1e-4 * (1 + 0.1 * seed))]
    return _frame(rows, stderr_fraction=0.02)


def _figure11_frame():
    """Depth sweep modelled on figure 11 (unnormalized prior, quick scale): the prior's loss falls with depth.

    G&C/prior goes 0.62 -> 0.74 (tanh), 0.50 -> 0.96 (leaky ReLU) and 0.49 -> 0.19 (linear)
    from depth 2 to 10 while G&C's absolute loss falls in every panel.
    """
    panels = {"linear": ((0.15, 0.12), (0.49, 0.19)), "tanh": ((0.191, 0.0735), (0.62, 0.74)),
              "leaky_relu": ((0.146, 0.0443), (0.50, 0.96))}
    depths = (2, 4, 6, 8, 10)
    rows = []
    for panel, ((prior_first, prior_last), (ratio_first, ratio_last)) in panels.items():
        for step, depth in enumerate(depths):
            fraction = step / (len(depths) - 1)
            prior = prior_first * (prior_last / prior_first) ** fraction
            ratio = ratio_first + (ratio_last - ratio_first) * fraction
            for seed in range(8):
                noise = 1 + 0.04 * (seed - 3.5) / 3.5
                rows += [(panel, "prior", depth, seed, prior * (1 + 0.01 * (seed - 3.5) / 3.5)),
                         (panel, "gnc", depth, seed, ratio * prior * noise)]
    return _frame(rows, stderr_fraction=0.03)


def _plotted_figure(monkeypatch, tmp_path, frame):
    """The matplotlib figure :func:`plot_sweep` draws for ``frame`` (nothing is written)."""
    import matplotlib.figure

    from volumelab.plotting import plot_sweep

    figures = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda figure, *args, **kwargs: figures.append(figure))
    plot_sweep(frame, title="t", x_name="width", panel="activation", out_stem=tmp_path / "plot", x_log=True)
    return figures[0]


def test_plot_uses_a_log_axis_across_orders_of_magnitude_and_shows_seed_counts(monkeypatch, tmp_path):
    figure = _plotted_figure(monkeypatch, tmp_path, _width_frame(3))  # GD ~1e-4, G&C and prior ~0.1-0.25
    axes = figure.axes[0]
    assert axes.get_yscale() == "log"
    lowest, highest = axes.get_ylim()
    assert lowest < 1e-4 < 0.25 < highest  # GD's curve is inside the axis, not on y = 0
    labels = [text.get_text() for text in axes.texts]
    assert "3/8" in labels  # seeds with a loss / seeds, where fewer than all have one
    assert not any(label.startswith("8/8") for label in labels)
    linear = _width_frame(8)
    linear.loc[linear["method"] == "gd", "gen_loss"] = 0.05
    axes = _plotted_figure(monkeypatch, tmp_path, linear).axes[0]
    assert axes.get_yscale() == "linear" and axes.get_ylim()[0] == 0
    assert len(axes.texts) == 0


def test_depth_claim_on_figure_11_reads_gnc_against_chance_per_seed():
    """G&C's absolute loss falls in every panel, but only the linear panel's G&C/prior falls: the verdict reads
    the per-seed ratio, and its effect equals a plain computation over seeds."""
    import numpy as np

    frame = _figure11_frame()
    frame["method_type"] = frame["method"].map({"gnc": "gnc", "prior": "prior"})
    frame["status"] = "ok"
    verdict = judge(get_study("depth"), frame, "activation", ["linear", "tanh", "leaky_relu"])
    outcomes = {p.panel: p.outcome for p in verdict.panels}
    assert outcomes == {"linear": "holds", "tanh": "fails", "leaky_relu": "fails"}
    assert verdict.outcome == "fails"
    linear = frame[frame["activation"] == "linear"].set_index(["method", "x", "seed"])["gen_loss"]
    ratio = {d: np.array([linear["gnc", d, s] / linear["prior", d, s] for s in range(8)]) for d in (2, 10)}
    expected = ratio[2] - ratio[10]
    effect = verdict.panels[0].decision.effect
    assert effect.n == 8 and effect.estimate == pytest.approx(expected.mean(), rel=1e-12)
    assert effect.stderr == pytest.approx(expected.std(ddof=1) / np.sqrt(8), rel=1e-12)


def test_ablation_heads_the_depth_verdict_of_an_unnormalized_prior(tmp_path):
    from dataclasses import replace

    from volumelab.plotting.report.builder import ReportSection, write_report
    from volumelab.studies.figures import prior_normalized

    frame = _figure11_frame()
    frame["method_type"] = frame["method"].map({"gnc": "gnc", "prior": "prior"})
    frame["status"] = "ok"
    frame["config"] = [{"model": {"normalize": False}, "method": {"name": m, "model": {}}} for m in frame["method"]]
    assert prior_normalized(frame) is False
    frame["config"] = [{"model": {"normalize": True}, "method": {"name": m, "model": {}}} for m in frame["method"]]
    assert prior_normalized(frame) is True
    frame["config"] = [{"model": {"normalize": False}, "method": {"name": m, "model": {}}} for m in frame["method"]]
    depth = get_study("depth")
    verdict = replace(judge(depth, frame, "activation"), heading=depth.heading(frame))
    summary = summarize(frame, "activation", ["linear", "tanh", "leaky_relu"])
    section = ReportSection(name="figure11", title="", description="", scale="quick", note="", image="", x_name="depth",
                            panel="activation", summary=summary, verdict=verdict, runs=len(frame), missing={},
                            seconds=0.0)
    report = write_report([section], tmp_path)[0].read_text()
    assert "**Ablation (G&C's prior not normalized):** **FAILS**" in report
    assert "- linear: holds: fall of G&C/chance" in report and "- tanh: fails:" in report
    assert "G&C / prior ± SE" in report


def test_a_report_says_when_results_were_judged_under_a_rule_changed_after_them(tmp_path):
    """Every run stores the digest of its sweep's rule; a later rule change is named next to the verdict."""
    from volumelab.evidence import Endpoint, Rule, Study, register_study

    config = load_sweep(write_config(tmp_path, TINY))
    outcome = run_sweep(config, out_dir=tmp_path / "out")
    section = write_sweep_outputs(outcome.plan, tmp_path / "out")
    original = get_study("width")
    assert f"Rule digest `{original.digest()}`" in section.rule_note and "Re-judged" not in section.rule_note
    rise = original.endpoints["rise"]
    moved = Study(original.name, original.paper, original.claim,
                  {"rise": Endpoint(Rule(rise.rule.endpoint, "increase", minimal_effect=0.05), rise.effect,
                                    worst_effect=rise.worst_effect)}, secondary=original.secondary)
    try:
        register_study(moved)
        section = write_sweep_outputs(outcome.plan, tmp_path / "out")
    finally:
        register_study(original)
    runs = section.runs
    assert f"Re-judged under a rule changed after these results:** {runs} of {runs} runs" in section.rule_note
    assert "Re-judged under a rule changed after these results" in (tmp_path / "out" / "report.md").read_text()
