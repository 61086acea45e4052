"""Independent runs at n = 256 agree (issue 33, Done when): the issue's command at several run seeds.

``volumelab gnc --model mlp --data digits --train 256 --width 64 --depth 2 --accept train_error --eps 0 --method
subset`` (10^6 model evaluations, the default), the training set fixed (data seed 0) and the run's seed varied:
per run its status, ``log_volume`` and SE, split-R-hat, ESS, test error and wall time; over the runs, the spread of
each estimate against its reported SEs (a chi-square of the ``ok`` runs about their SE-weighted mean, and the ratio
of the SD over seeds to the root-mean-square SE): the SE calibration check at the ladder's depth.

Three estimates of ``log P`` from a run's ``R`` replicates ``l_r = log P_r`` (mean ``m``, SD ``s``):

- ``log_volume``, ``log mean_r exp(l_r)``, with the delta-method SE ``sd_r(P_r) / (sqrt(R) mean_r P_r)``;
- ``log_volume_mean_log``, ``m`` with SE ``s / sqrt(R)`` (it estimates ``E[l_r]``, below ``log P``);
- ``lognormal`` (computed here, not by the library): with ``l_r`` normal (a sum of many levels' log
  fractions) ``log E[P_r] = E[l_r] + Var(l_r) / 2``, estimated by ``m + s^2 / 2`` with SE
  ``sqrt(s^2 / R + s^4 / (2 (R - 1)))`` (the variances of a normal sample's mean and of half its variance).

``expected_ratio_lognormal`` is what the SD-over-seeds / RMS-SE ratio of ``log_volume`` would be if the replicates
were exactly lognormal with the runs' median ``s`` (simulated, 10^5 runs of ``R``): the part of a miscalibration that
the delta method's known weakness for spread-out lognormals explains.

    python benchmarks/replicate_agreement.py --seeds 0,1,2,3 --out benchmarks/results/replicate_agreement_n256.json
    python benchmarks/replicate_agreement.py --seeds 0-15 --train 128 --width 16 --depth 3 --budget 400000 \
        --out benchmarks/results/replicate_agreement_n128_w16.json
    python benchmarks/replicate_agreement.py --seeds 1-16 --train 128 --width 16 --depth 3 --budget 400000 \
        --pilot-seed 0 --out benchmarks/results/replicate_agreement_n128_w16_fixed_pilot.json
    python benchmarks/replicate_agreement.py --seeds 0-15 --train 128 --width 16 --depth 3 --budget 800000 \
        --independent-ladders --out benchmarks/results/replicate_agreement_n128_w16_independent.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import datetime, timezone

import numpy as np
import torch
from scipy import stats

from volumelab.models import MLPModel
from volumelab.optimizers import GuessCheck
from volumelab.problems import make_supervised


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        first, last = (int(part) for part in text.split("-"))
        return list(range(first, last + 1))
    return [int(part) for part in text.split(",")]


def agreement(values: np.ndarray, errors: np.ndarray) -> dict:
    """Spread of independent runs' estimates against their reported SEs."""
    weights = 1 / errors ** 2
    mean = float((weights * values).sum() / weights.sum())
    chi_square = float((weights * (values - mean) ** 2).sum())
    sd, rms = float(values.std(ddof=1)), float(np.sqrt(np.mean(errors ** 2)))
    return {"weighted_mean": mean, "sd_over_seeds": sd, "mean_reported_se": float(errors.mean()),
            "rms_reported_se": rms, "sd_over_rms_se": sd / rms, "chi_square": chi_square, "dof": values.size - 1,
            "p_value": float(stats.chi2.sf(chi_square, values.size - 1))}


def lognormal_ratio(spread: float, replicates: int, runs: int = 100_000) -> float:
    """SD over runs / RMS delta-method SE of ``log mean exp(l_r)`` for ``l_r`` normal with SD ``spread``."""
    logs = np.random.default_rng(0).normal(0.0, spread, (runs, replicates))
    top = logs.max(1, keepdims=True)
    weights = np.exp(logs - top)
    mean = weights.mean(1)
    estimates = top[:, 0] + np.log(mean)
    errors = weights.std(1, ddof=1) / math.sqrt(replicates) / mean
    return float(estimates.std(ddof=1) / np.sqrt(np.mean(errors ** 2)))


def summarize(rows: list[dict], replicates: int) -> dict:
    """Over the runs that reached eps (``ok`` or ``not_mixed``: both report their volumes; R-hat judges the
    chains' posterior means, not the ladder): each estimate's spread against its reported SEs."""
    for row in rows:
        if row.get("log_volume_mean_log_stderr") is not None:
            spread = row["log_volume_mean_log_stderr"] * math.sqrt(replicates)
            row["replicate_log_sd"] = spread
            row["lognormal"] = row["log_volume_mean_log"] + spread ** 2 / 2
            row["lognormal_stderr"] = math.sqrt(spread ** 2 / replicates + spread ** 4 / (2 * (replicates - 1)))
    reached = [r for r in rows if r["status"] in ("ok", "not_mixed")]
    summary = {"runs": len(rows), "ok": sum(r["status"] == "ok" for r in rows),
               "reached": len(reached), "statuses": {s: sum(r["status"] == s for r in rows)
                                                              for s in sorted({r["status"] for r in rows})},
               "rhat_below_1.05": sum(1 for r in rows if r["rhat"] and r["rhat"] < 1.05), "replicates": replicates}
    if len(reached) >= 2:
        spreads = all("replicate_log_sd" in r for r in reached)  # the first version's rows lack mean_log's SE
        for name, key, error in (("log_volume", "log_volume", "log_volume_stderr"),
                                 ("mean_log", "log_volume_mean_log", "log_volume_mean_log_stderr"),
                                 ("lognormal", "lognormal", "lognormal_stderr"))[:3 if spreads else 1]:
            summary[name] = agreement(np.array([r[key] for r in reached]), np.array([r[error] for r in reached]))
        # Backward-compatible keys (the first version's summary, log_volume only).
        summary.update({key: summary["log_volume"][key] for key in ("weighted_mean", "sd_over_seeds",
                                                                     "mean_reported_se", "chi_square", "dof")})
        if not spreads:
            return summary
        median_spread = float(np.median([r["replicate_log_sd"] for r in reached]))
        summary["median_replicate_log_sd"] = median_spread
        summary["expected_ratio_lognormal"] = lognormal_ratio(median_spread, replicates)
    return summary


def hold_pilot(seed: int) -> None:
    """Make every run's pilot draw from ``(seed, "subset-pilot")``: the runs then share one ladder and differ only
    in their replicates' streams, so their spread is the variance given the ladder (a diagnostic, not an option
    of the library)."""
    from volumelab.optimizers import subset

    original = subset.make_generator

    def generator(run_seed, *parts, **options):
        return original(seed if parts[:1] == ("subset-pilot",) else run_seed, *parts, **options)

    subset.make_generator = generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3", help="comma-separated run seeds, or a range A-B")
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--budget", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--independent-ladders", action="store_true",
                        help="a ladder per replicate (its own pilot) instead of one shared ladder")
    parser.add_argument("--pilot-seed", type=int, default=None,
                        help="diagnostic: every run's pilot uses this seed's stream (the shared ladder held fixed), "
                             "only the replicates' streams follow the run seed")
    parser.add_argument("--out", default=None)
    parser.add_argument("--summarize", default=None, metavar="JSON",
                        help="recompute the summary of a stored output (its rows) and print it; nothing is run")
    args = parser.parse_args()
    if args.summarize:
        stored = json.load(open(args.summarize))
        print(json.dumps(summarize(stored["rows"], stored["summary"].get("replicates", 8)), indent=1))
        return
    torch.set_num_threads(args.threads)
    if args.pilot_seed is not None:
        hold_pilot(args.pilot_seed)
    problem = make_supervised("digits", args.train, seed=0, classes=(3, 8))
    model = MLPModel(problem.num_features, args.width, args.depth)
    optimizer = GuessCheck(eps=0, accept="train_error", method="subset", independent_ladders=args.independent_ladders)
    replicates = optimizer.estimator().replicates
    rows = []
    for seed in parse_seeds(args.seeds):
        start = time.perf_counter()
        result = optimizer.run(problem, model, args.budget, seed=seed)
        metrics, errors = result.metrics, result.standard_errors
        row = {"seed": seed, "status": result.status, "log_volume": metrics.get("log_volume"),
               "log_volume_stderr": errors.get("log_volume"), "log_volume_mean_log": metrics.get("log_volume_mean_log"),
               "log_volume_mean_log_stderr": metrics.get("log_volume_mean_log_stderr"),
               "rhat": metrics.get("rhat"), "ess": metrics.get("ess"), "test_error": metrics.get("test_error"),
               "test_error_stderr": errors.get("test_error"), "evaluations": metrics.get("evaluations"),
               "seconds": time.perf_counter() - start}
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = summarize(rows, replicates)
    print(json.dumps(summary))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"benchmark": "replicate_agreement",
                       "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "machine": {"platform": platform.platform(), "threads": args.threads},
                       "settings": vars(args), "rows": rows, "summary": summary}, handle, indent=1)


if __name__ == "__main__":
    main()
