"""The wide-MLP studies' verdicts against hand-made inputs whose answer is known by construction."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from volumelab.studies import STUDY_CLAIMS, judge_study, study_rule
from volumelab.studies.mlp import (CONCENTRATION_RATIO, LIMIT_TOLERANCE, best_learning_rates, log_log_slope)


def test_every_mlp_claim_is_dispatched_with_its_rule():
    for claim in ("mlp-ntk", "mlp-convergence", "mlp-lazy", "mlp-lr-transfer", "mlp-volume"):
        assert claim in STUDY_CLAIMS and len(study_rule(claim)) > 100
    with pytest.raises(ValueError, match="unknown study"):
        study_rule("mlp-nothing")


def test_log_log_slope_against_numpy_polyfit():
    generator = np.random.default_rng(0)
    xs = np.repeat([64.0, 256.0, 1024.0, 4096.0], 4)
    ys = 3.0 * xs ** -0.5 * np.exp(0.1 * generator.standard_normal(xs.size))
    slope, stderr, n = log_log_slope(xs, ys)
    assert slope == pytest.approx(np.polyfit(np.log(xs), np.log(ys), 1)[0], rel=1e-12)
    # The regression standard error by its textbook formula.
    fitted = np.polyval(np.polyfit(np.log(xs), np.log(ys), 1), np.log(xs))
    residual = np.sum((np.log(ys) - fitted) ** 2) / (xs.size - 2)
    assert stderr == pytest.approx(math.sqrt(residual / np.sum((np.log(xs) - np.log(xs).mean()) ** 2)), rel=1e-9)
    assert n == 16
    assert math.isnan(log_log_slope([1, 2], [1, 2])[0])  # too few points


def test_best_learning_rates_against_a_plain_loop_and_diverged_runs_lose():
    rows = []
    generator = np.random.default_rng(2)
    lrs = [2.0 ** e for e in range(-4, 3)]
    for width in (64, 256):
        for lr in lrs:
            for seed in range(3):
                loss = (math.log2(lr) - (0 if width == 64 else -2)) ** 2 + 0.1 + 0.01 * generator.random()
                rows.append({"width": width, "lr": lr, "seed": seed, "train_loss": loss})
    frame = pd.DataFrame(rows)
    # The best rate at width 256 would be 0.25 were it not for two diverged seeds of three (median +inf).
    frame.loc[(frame["width"] == 256) & (frame["lr"] == 0.25) & (frame["seed"] < 2), "train_loss"] = np.nan
    best = best_learning_rates(frame)
    for width in (64, 256):
        medians = {}
        for lr in lrs:
            values = frame[(frame["width"] == width) & (frame["lr"] == lr)]["train_loss"].tolist()
            values = sorted(math.inf if math.isnan(v) else v for v in values)
            medians[lr] = values[len(values) // 2]
        want = min(medians, key=medians.get)
        assert best[width] == (want, medians[want])
    assert best[64][0] == 1.0 and best[256][0] != 0.25


def ntk_frame(spread_at_largest: float, limit: float) -> pd.DataFrame:
    """lambda_min 0.1 at every width, relative spread 0.4 at width 16 falling to spread_at_largest; 4 seeds."""
    rows = []
    generator = np.random.default_rng(3)
    widths = (16, 64, 256)
    for seed in range(4):
        for i, width in enumerate(widths):
            spread = 0.4 + (spread_at_largest - 0.4) * i / (len(widths) - 1)
            value = 0.1 * (1 + 0.01 * generator.standard_normal())
            rows.append({"method": "ntk", "x": width, "width": width, "depth": 2, "parametrization": "ntk",
                         "seed": seed, "lambda_min": value, "lambda_min_std": spread * value,
                         "lambda_min_limit": limit, "status": "ok"})
    return pd.DataFrame(rows)


def test_ntk_verdict_follows_concentration_and_the_limit(tmp_path):
    good, _ = judge_study("mlp-ntk", ntk_frame(0.1, 0.1), tmp_path, ["depth", "width"])
    assert good.outcome == "holds", [p.detail for p in good.panels]
    # Spread falling to just above the rule's ratio: not concentrating.
    flat, _ = judge_study("mlp-ntk", ntk_frame(0.4 * CONCENTRATION_RATIO * 1.1, 0.1), tmp_path, ["width"])
    assert flat.outcome == "fails"
    far, _ = judge_study("mlp-ntk", ntk_frame(0.1, 0.1 * (1 + 2 * LIMIT_TOLERANCE)), tmp_path, ["width"])
    assert far.outcome == "fails" and "infinite-width value (closed form, each seed's training set) at width 256: 0.83" in far.panels[0].detail


def gd_frame(rate_factor, predicted_offset, change_exponent) -> pd.DataFrame:
    rows = []
    generator = np.random.default_rng(4)
    for seed in range(4):
        for depth in (2, 3):
            for width in (64, 256, 1024):
                noise = 1 + 0.02 * generator.standard_normal()
                rate = 0.06 * rate_factor(width) * noise
                rows.append({"method": "gd", "x": width, "width": width, "depth": depth, "seed": seed,
                             "loss_rate": rate, "predicted_rate": rate + predicted_offset,
                             "param_change": 0.1 * (width / 64) ** change_exponent * noise,
                             "ntk_change": 0.2 * (width / 64) ** change_exponent * noise,
                             "gen_loss": 0.5, "train_loss": 1e-10, "status": "ok"})
    return pd.DataFrame(rows)


def test_convergence_verdict(tmp_path):
    holds, _ = judge_study("mlp-convergence", gd_frame(lambda w: 1.0, -0.01, -0.5), tmp_path, ["depth", "width"])
    assert holds.outcome == "holds", [p.detail for p in holds.panels]
    # The measured rate below the NTK's bound by many SE: the bound fails.
    below, _ = judge_study("mlp-convergence", gd_frame(lambda w: 1.0, 0.01, -0.5), tmp_path, ["depth", "width"])
    assert below.outcome == "fails"
    # A rate that halves with width degrades.
    slower, _ = judge_study("mlp-convergence", gd_frame(lambda w: (w / 64) ** -0.25, -0.01, -0.5), tmp_path,
                            ["depth", "width"])
    assert slower.outcome == "fails"
    assert re.search(r"rate at width 1024 / width 64: 0\.[45]\d* \(fails\)", slower.panels[0].detail)


def test_lazy_verdict(tmp_path):
    lazy, _ = judge_study("mlp-lazy", gd_frame(lambda w: 1.0, 0.0, -0.5), tmp_path, ["depth", "width"])
    assert lazy.outcome == "holds"
    assert re.search(r"param_change: .* log-log slope -0\.(4[5-9]|5[0-5])\d* ±.*order -0.5\)", lazy.panels[0].detail)
    assert "param_change" in lazy.panels[1].detail and "(lazy-regime order -1)" in lazy.panels[1].detail
    active, _ = judge_study("mlp-lazy", gd_frame(lambda w: 1.0, 0.0, 0.2), tmp_path, ["depth", "width"])
    assert active.outcome == "fails"


def transfer_frame(standard_shift_per_width: float) -> pd.DataFrame:
    rows = []
    lrs = [2.0 ** e for e in range(-8, 3)]
    for parametrization in ("standard", "ntk", "mup"):
        for j, width in enumerate((64, 256, 1024)):
            best = 0.0 - (standard_shift_per_width * j if parametrization == "standard" else 0)
            for lr in lrs:
                for seed in range(2):
                    rows.append({"method": "gd", "x": lr, "lr": lr, "width": width, "parametrization": parametrization,
                                 "seed": seed, "train_loss": 0.01 + (math.log2(lr) - best) ** 2,
                                 "gen_loss": 0.5 + (math.log2(lr) - best) ** 2, "status": "ok"})
    return pd.DataFrame(rows)


def test_lr_transfer_verdict(tmp_path):
    holds, _ = judge_study("mlp-lr-transfer", transfer_frame(2.0), tmp_path, ["parametrization", "width", "lr"])
    assert holds.outcome == "holds", [p.detail for p in holds.panels]
    assert "shift 4 grid steps" in holds.panels[-1].detail
    # The standard parametrization's optimum does not move: the drift the claim expects is missing.
    still, _ = judge_study("mlp-lr-transfer", transfer_frame(0.0), tmp_path, ["parametrization", "width", "lr"])
    assert still.outcome == "fails" and [p.outcome for p in still.panels] == ["holds", "holds", "fails"]


def volume_frame(gnc_growth: float) -> pd.DataFrame:
    rows = []
    generator = np.random.default_rng(5)
    for seed in range(6):
        for depth in (2, 3):
            for i, width in enumerate((4, 16, 64)):
                gd = 0.1 + 0.01 * generator.standard_normal()
                for method, error in (("gnc", gd + 0.05 + gnc_growth * i), ("gnc_uniform", gd + 0.05 + gnc_growth * i),
                                      ("gd", gd), ("prior", 0.5)):
                    rows.append({"method": method, "x": width, "width": width, "depth": depth, "seed": seed,
                                 "test_error": error + 0.003 * generator.standard_normal(),
                                 "acceptance_rate": 1e-3 if method.startswith("gnc") else np.nan, "status": "ok"})
    return pd.DataFrame(rows)


def test_volume_verdict(tmp_path):
    behind, paths = judge_study("mlp-volume", volume_frame(0.05), tmp_path, ["depth", "width"], stem=tmp_path / "v")
    assert behind.outcome == "holds", [p.detail for p in behind.panels]
    assert behind.panels[-1].outcome == "measured" and (tmp_path / "v.png").is_file() and paths
    level, _ = judge_study("mlp-volume", volume_frame(0.0), tmp_path, ["depth", "width"])
    assert level.outcome == "inconclusive"
    ahead, _ = judge_study("mlp-volume", volume_frame(-0.03), tmp_path, ["depth", "width"])
    assert ahead.outcome == "fails"


@pytest.mark.parametrize("claim, frame", [
    ("mlp-ntk", lambda: ntk_frame(0.1, 0.1)),
    ("mlp-convergence", lambda: gd_frame(lambda w: 1.0, -0.01, -0.5)),
    ("mlp-lazy", lambda: gd_frame(lambda w: 1.0, 0.0, -0.5)),
    ("mlp-lr-transfer", lambda: transfer_frame(2.0)),
])
def test_each_study_writes_its_plot(tmp_path, claim, frame):
    _, paths = judge_study(claim, frame(), tmp_path, ["width"], stem=tmp_path / "plots" / claim, title=claim)
    assert {p.suffix for p in paths} == {".png", ".pdf"} and all(p.stat().st_size > 0 for p in paths)


def test_ntk_verdict_edge_cases(tmp_path):
    # Each seed has its own training set and limit; every seed matches its own: holds.
    frame = ntk_frame(0.1, 0.1)
    frame["lambda_min_limit"] = 0.1 * (1 + frame["seed"])
    frame["lambda_min"] = frame["lambda_min"] * (1 + frame["seed"])
    frame["lambda_min_std"] = frame["lambda_min_std"] * (1 + frame["seed"])
    own, _ = judge_study("mlp-ntk", frame, tmp_path, ["width"])
    assert own.outcome == "holds", own.panels[0].detail
    # One draw per seed: no spread, so concentration cannot be judged.
    single = ntk_frame(0.1, 0.1).assign(lambda_min_std=np.nan)
    assert judge_study("mlp-ntk", single, tmp_path, ["width"])[0].outcome == "inconclusive"
    # Every run at the largest width gave a non-finite NTK: that width is not silently dropped.
    broken = ntk_frame(0.1, 0.1)
    broken.loc[broken["width"] == 256, ["lambda_min", "lambda_min_std", "lambda_min_limit"]] = np.nan
    verdict, _ = judge_study("mlp-ntk", broken, tmp_path, ["width"])
    assert verdict.outcome == "fails" and "4 of 12 runs gave a non-finite NTK" in verdict.panels[0].detail
    # A panel without a closed form (standard) is judged on positivity and concentration only.
    standard = ntk_frame(0.1, np.nan).assign(parametrization="standard")
    both = pd.concat([ntk_frame(0.1, 0.1), standard], ignore_index=True)
    verdict, _ = judge_study("mlp-ntk", both, tmp_path, ["parametrization", "width"])
    assert verdict.outcome == "holds" and [p.panel for p in verdict.panels] == ["ntk, depth 2", "standard, depth 2"]
    assert "infinite-width" not in verdict.panels[1].detail
    # One width: no concentration to measure.
    one = ntk_frame(0.1, 0.1)
    assert judge_study("mlp-ntk", one[one["width"] == 64], tmp_path, ["width"])[0].outcome == "inconclusive"


def test_convergence_counts_runs_and_reads_the_bound_in_standard_errors(tmp_path):
    frame = gd_frame(lambda w: 1.0, 0.0, -0.5)
    # Measured just below the bound, well within 2 SE: the bound is not refuted.
    frame["predicted_rate"] = frame["loss_rate"] + 0.001 + 0.01 * np.where(frame["seed"] % 2 == 0, 1, -1)
    verdict, _ = judge_study("mlp-convergence", frame, tmp_path, ["depth", "width"])
    assert "bound holds" in verdict.panels[0].detail
    frame.loc[0, "loss_rate"] = -0.01
    verdict, _ = judge_study("mlp-convergence", frame, tmp_path, ["depth", "width"])
    assert verdict.outcome == "fails" and verdict.panels[0].detail.startswith("11 of 12 runs with a positive rate")


def test_lr_transfer_edge_cases(tmp_path):
    coords = ["parametrization", "width", "lr"]
    # ntk's optimum moving 3 grid steps does not transfer.
    frame = transfer_frame(2.0)
    moved = (frame["parametrization"] == "ntk") & (frame["width"] == 1024)
    frame.loc[moved, "train_loss"] = 0.01 + (np.log2(frame.loc[moved, "lr"]) + 3) ** 2
    verdict, _ = judge_study("mlp-lr-transfer", frame, tmp_path, coords)
    assert verdict.outcome == "fails" and verdict.panels[0].outcome == "fails"
    # Every learning rate diverged at the largest width: no best rate, inconclusive.
    frame = transfer_frame(2.0)
    frame.loc[frame["width"] == 1024, "train_loss"] = np.nan
    verdict, _ = judge_study("mlp-lr-transfer", frame, tmp_path, coords)
    assert [p.outcome for p in verdict.panels] == ["inconclusive"] * 3
    assert "every learning rate diverged at width 1024" in verdict.panels[0].detail


TINY_STUDIES = {
    "mlp-ntk": """\
        name: tiny-ntk
        claim: mlp-ntk
        x: model.width
        panel: model.parametrization
        problem: {kind: supervised, data: digits, train: 8, loss: squared}
        model: {kind: mlp, width: 8, depth: 2, parametrization: ntk}
        methods:
          ntk: {draws: 3}
        grid:
          model.parametrization: [ntk, standard]
          model.width: [8, 32]
        seeds: 2
        """,
    "mlp-volume": """\
        name: tiny-volume
        claim: mlp-volume
        x: model.width
        problem: {kind: supervised, data: digits, train: 4, test: 20}
        model: {kind: mlp, width: 4, depth: 2}
        methods:
          gnc: {eps: 0.01, samples: 2000, accept: train_error}
          gnc_uniform: {type: gnc, eps: 0.01, samples: 2000, accept: train_error, model: {prior: uniform}}
          gd: {lr: 0.5, steps: 30, init_scale: 1.0}
        grid:
          model.width: [4, 8]
        seeds: 2
        """,
    "mlp-lr-transfer": """\
        name: tiny-lr
        claim: mlp-lr-transfer
        x: methods.gd.lr
        panel: model.parametrization
        problem: {kind: supervised, data: digits, train: 8, loss: squared}
        model: {kind: mlp, width: 8, depth: 2}
        methods:
          gd: {lr: 0.1, steps: 10, init_scale: 1.0}
        grid:
          model.parametrization: [standard, ntk]
          model.width: [8, 16]
          methods.gd.lr: [0.1, 0.4]
        seeds: 2
        """,
}


@pytest.mark.parametrize("claim", sorted(TINY_STUDIES))
def test_a_tiny_study_runs_end_to_end_and_is_judged_from_its_stored_rows(tmp_path, claim):
    """From the CLI: the runs, the store, the frame's columns and the report's verdict and plots."""
    from tiny_sweep import write_config

    from volumelab.cli import main

    path = write_config(tmp_path, TINY_STUDIES[claim])
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    name = path.read_text(encoding="utf-8").split("name: ")[1].split()[0]
    assert f"plots/{name}-claim.png" in report and (tmp_path / "out" / "plots" / f"{name}-claim.png").is_file()
    assert re.search(r"\*\*Paper's claim:\*\* \*\*(HOLDS|FAILS|INCONCLUSIVE|PARTLY HOLDS)\*\*", report)
    assert "Rule: " in report
    if claim == "mlp-ntk":
        # A diagnostics-only sweep has no loss to plot: its study plot is the section's image, and its runs
        # are not listed as missing a loss.
        assert not (tmp_path / "out" / "plots" / f"{name}.png").exists()
        assert re.search(r"8 runs stored; runs without a loss \([^)]*\): none\.", report)
        frame = pd.read_csv(tmp_path / "out" / "results.csv")
        assert frame["lambda_min_std"].notna().all() and (frame["lambda_min"] > 0).all()
        assert frame[frame["parametrization"] == "ntk"]["lambda_min_limit"].notna().all()
        assert frame[frame["parametrization"] == "standard"]["lambda_min_limit"].isna().all()


def volume_train_frame(gap: float, accepted_at_16: bool = True) -> pd.DataFrame:
    rows = []
    generator = np.random.default_rng(7)
    for seed in range(5):
        for n in (2, 4, 8, 16):
            gd = 0.3 - 0.02 * n + 0.01 * generator.standard_normal()
            gnc = gd + gap + 0.005 * generator.standard_normal()
            none = n == 16 and not accepted_at_16
            rows += [{"method": "gnc", "x": n, "train": n, "seed": seed, "test_error": np.nan if none else gnc,
                      "acceptance_rate": 0.0 if none else 0.01 / n, "accepted": 0 if none else 100 // n,
                      "status": "no_acceptance" if none else "ok"},
                     {"method": "gd", "x": n, "train": n, "seed": seed, "test_error": gd, "status": "completed"},
                     {"method": "prior", "x": n, "train": n, "seed": seed, "test_error": 0.5, "status": "ok"}]
    return pd.DataFrame(rows)


def test_volume_train_verdict(tmp_path):
    from volumelab.studies.mlp import PARITY_BAND

    parity, paths = judge_study("mlp-volume-train", volume_train_frame(0.02), tmp_path, ["train"],
                                stem=tmp_path / "vt")
    assert parity.outcome == "holds" and len(parity.panels) == 4 and paths
    behind, _ = judge_study("mlp-volume-train", volume_train_frame(PARITY_BAND + 0.1), tmp_path, ["train"])
    assert behind.outcome == "fails" and re.search(r"G&C - GD \+0\.1[45]\d* ± ", behind.panels[0].detail)
    empty, _ = judge_study("mlp-volume-train", volume_train_frame(0.02, accepted_at_16=False), tmp_path, ["train"])
    assert empty.outcome == "inconclusive" and empty.panels[-1].outcome == "inconclusive"
    assert "5 of 5 seeds accepted nothing" in empty.panels[-1].detail
