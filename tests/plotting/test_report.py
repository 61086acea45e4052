"""Verdicts from data, and the plots and report written for a sweep."""

from __future__ import annotations

import pandas as pd

from volumelab.experiments import load_sweep, run_sweep
from volumelab.plotting import summarize
from volumelab.plotting.report import judge, write_sweep_outputs

from tiny_sweep import TINY, write_config


def _summary(rows):
    frame = pd.DataFrame(rows, columns=["activation", "method", "x", "seed", "gen_loss"])
    frame["accepted"] = 10
    return summarize(frame, "activation")


def _width_rows(gnc_last, gd_value=0.01):
    rows = []
    for seed in range(4):
        for x, gnc in ((5, 0.1), (160, gnc_last)):
            rows += [("linear", "gnc", x, seed, gnc + 0.001 * seed), ("linear", "prior", x, seed, 0.25),
                     ("linear", "gd", x, seed, gd_value)]
    return rows


def test_width_verdicts():
    assert judge(_summary(_width_rows(0.24)), "width").outcome == "holds"
    assert judge(_summary(_width_rows(0.12)), "width").outcome == "fails"  # G&C stays far from chance
    assert judge(_summary(_width_rows(0.24, gd_value=0.2)), "width").outcome == "fails"  # GD is not low


def test_depth_verdicts_and_missing_data():
    falling = [("tanh", "gnc", d, s, 0.08 / d + 0.001 * s) for d in (2, 4, 6, 8) for s in range(3)]
    flat = [("tanh", "gnc", d, s, 0.05 + 0.001 * s) for d in (2, 4, 6, 8) for s in range(3)]
    assert judge(_summary(falling), "depth").outcome == "holds"
    assert judge(_summary(flat), "depth").outcome == "fails"
    missing = [r if r[2] != 8 else r[:4] + (None,) for r in falling]
    verdict = judge(_summary(missing), "depth")
    assert verdict.outcome == "inconclusive"
    assert judge(_summary(falling), "none") is None


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
    assert "Rule:" in report and "plots/tiny.png" in report
    assert "GD train loss (median)" in report
    assert "GD did not fit the training data" in report  # 20 steps from a small initialization
    frame = pd.read_csv(out / "results.csv")
    no_acceptance = int(frame[frame["method"] == "gnc"]["gen_loss"].isna().sum())
    assert section.missing["gnc"] == no_acceptance
    if no_acceptance:
        assert f"gnc: {no_acceptance}" in report
    assert "<img src='plots/tiny.png'" in (out / "report.html").read_text()


def test_report_says_where_gd_did_not_fit():
    from volumelab.plotting.report.builder import GD_FIT_TRAIN_LOSS, ReportSection, _gd_fit_sentence, gd_fit

    rows = []
    for seed in range(3):
        for depth, train in ((2, 1e-5), (8, 3e-2)):
            rows.append(("tanh", "gd", depth, seed, 0.01, train, "gd"))
            rows.append(("tanh", "gnc", depth, seed, 0.05, 0.005, "gnc"))
    frame = pd.DataFrame(rows, columns=["activation", "method", "x", "seed", "gen_loss", "train_loss", "method_type"])
    table = gd_fit(frame, "activation")
    assert list(table["x"]) == [2, 8] and set(table["method"]) == {"gd"}
    section = ReportSection(name="s", title="", description="", scale="quick", note="", image="", x_name="depth",
                            panel="activation", summary=pd.DataFrame(), verdict=None, runs=12, missing={},
                            seconds=0.0, gd_train=table)
    sentence = _gd_fit_sentence(section)
    assert f"above {GD_FIT_TRAIN_LOSS:g}" in sentence and "tanh depth 8 (0.03)" in sentence and "2 (" not in sentence
    section.gd_train = gd_fit(frame[frame["x"] == 2], "activation")
    assert _gd_fit_sentence(section).startswith("GD fit the training data at every point")
    section.gd_train = gd_fit(frame[frame["method"] == "gnc"], "activation")
    assert _gd_fit_sentence(section) is None
