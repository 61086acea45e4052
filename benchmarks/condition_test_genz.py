"""``condition_test`` against Genz at depth 1 over run seeds: is ``log_volume_test_given_train`` biased?

A linear classifier (depth-1 MLP, ``w ~ N(0, I / 64)``) on 16 points of the Gaussian design (64 features, a dense
linear teacher's labels), the first 8 for training and the last 8 as the test set: with ``test_eps = 0`` the sets
"no training error" and "no error at all" are Gaussian orthants, so ``log P(no test error | no training error)``
is the difference of two Genz log probabilities (:func:`volumelab.diagnostics.prior_volume.
linear_classifier_log_volume`). Per run seed: the estimate, its SE and z; over the seeds: the mean deviation with
the SE of the runs' own spread, and the runs' SD against the RMS reported SE.

    python benchmarks/condition_test_genz.py --seeds 0-15 --out benchmarks/results/condition_test_genz.json
    python benchmarks/condition_test_genz.py --seeds 0-15 --independent-ladders \\
        --out benchmarks/results/condition_test_genz_independent.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import datetime, timezone

import torch

import volumelab as vl
from volumelab.diagnostics.prior_volume import linear_classifier_log_volume


def summary(rows: list[dict]) -> dict:
    ok = [row for row in rows if row["status"] == "ok"]
    if len(ok) < 2:
        return {"runs": len(rows), "ok": len(ok)}
    deviations = [row["estimate"] - row["exact"] for row in ok]
    mean = math.fsum(deviations) / len(ok)
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in deviations) / (len(ok) - 1))
    zs = [row["z"] for row in ok]
    z_mean = math.fsum(zs) / len(ok)
    return {"runs": len(rows), "ok": len(ok), "mean_deviation": mean, "mean_deviation_stderr": sd / math.sqrt(len(ok)),
            "sd_over_seeds": sd, "rms_reported_se": math.sqrt(math.fsum(row["stderr"] ** 2 for row in ok) / len(ok)),
            "z_mean": z_mean, "z_sd": math.sqrt(math.fsum((z - z_mean) ** 2 for z in zs) / (len(ok) - 1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-7", help="a range A-B or comma-separated run seeds")
    parser.add_argument("--budget", type=int, default=1_000_000)
    parser.add_argument("--population", type=int, default=2000)
    parser.add_argument("--independent-ladders", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if "-" in args.seeds:
        first, last = (int(part) for part in args.seeds.split("-"))
        seeds = list(range(first, last + 1))
    else:
        seeds = [int(part) for part in args.seeds.split(",")]
    full = vl.make_supervised("linear_teacher", 16, seed=0, num_test=100, num_features=64)
    model = vl.MLPModel(64, 1, 1)
    split = vl.SupervisedProblem(full.X_train[:8], full.y_train[:8], full.X_train[8:], full.y_train[8:],
                                 loss="logistic")
    exact = (linear_classifier_log_volume(full, model).log_volume
             - linear_classifier_log_volume(split, model).log_volume)
    rows = []
    for seed in seeds:
        start = time.perf_counter()
        result = vl.GuessCheck(eps=0, accept="train_error", method="subset", population=args.population,
                               condition_test=True, test_eps=0.0,
                               independent_ladders=args.independent_ladders).run(split, model, args.budget, seed=seed)
        estimate = result.metrics.get("log_volume_test_given_train")
        stderr = result.standard_errors.get("log_volume_test_given_train")
        row = {"seed": seed, "status": result.status, "exact": exact, "estimate": estimate, "stderr": stderr,
               "z": (estimate - exact) / stderr if estimate is not None and stderr else None,
               "seconds": time.perf_counter() - start}
        rows.append(row)
        print(json.dumps(row), flush=True)
    totals = summary(rows)
    print(json.dumps(totals))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"benchmark": "condition_test_genz", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "machine": {"platform": platform.platform(), "threads": args.threads},
                       "settings": vars(args), "rows": rows, "summary": totals}, handle, indent=1)


if __name__ == "__main__":
    main()
