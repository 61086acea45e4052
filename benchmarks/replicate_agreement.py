"""Independent runs at n = 256 agree (issue 33, Done when): the issue's command at several run seeds.

``volumelab gnc --model mlp --data digits --train 256 --width 64 --depth 2 --accept train_error --eps 0 --method
subset`` (10^6 model evaluations, the default), the training set fixed (data seed 0) and the run's seed varied:
per run its status, ``log_volume`` and SE, split-R-hat, ESS, test error and wall time; over the runs, the spread of
``log_volume`` against the reported SEs (a chi-square of the ``ok`` runs about their SE-weighted mean).

    python benchmarks/replicate_agreement.py --seeds 0,1,2,3 --out benchmarks/results/replicate_agreement_n256.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone

import numpy as np
import torch

from volumelab.models import MLPModel
from volumelab.optimizers import GuessCheck
from volumelab.problems import make_supervised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--budget", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    problem = make_supervised("digits", args.train, seed=0, classes=(3, 8))
    model = MLPModel(problem.num_features, args.width, 2)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        start = time.perf_counter()
        result = GuessCheck(eps=0, accept="train_error", method="subset").run(problem, model, args.budget, seed=seed)
        metrics, errors = result.metrics, result.standard_errors
        row = {"seed": seed, "status": result.status, "log_volume": metrics.get("log_volume"),
               "log_volume_stderr": errors.get("log_volume"), "log_volume_mean_log": metrics.get("log_volume_mean_log"),
               "rhat": metrics.get("rhat"), "ess": metrics.get("ess"), "test_error": metrics.get("test_error"),
               "test_error_stderr": errors.get("test_error"), "evaluations": metrics.get("evaluations"),
               "seconds": time.perf_counter() - start}
        rows.append(row)
        print(json.dumps(row), flush=True)
    ok = [r for r in rows if r["status"] == "ok"]
    summary = {"runs": len(rows), "ok": len(ok), "rhat_below_1.05": sum(1 for r in rows if r["rhat"] and r["rhat"] < 1.05)}
    if len(ok) >= 2:
        values = np.array([r["log_volume"] for r in ok])
        weights = 1 / np.array([r["log_volume_stderr"] for r in ok]) ** 2
        mean = float((weights * values).sum() / weights.sum())
        summary.update({"weighted_mean": mean, "sd_over_seeds": float(values.std(ddof=1)),
                        "mean_reported_se": float(np.mean([r["log_volume_stderr"] for r in ok])),
                        "chi_square": float((weights * (values - mean) ** 2).sum()), "dof": len(ok) - 1})
    print(json.dumps(summary))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"benchmark": "replicate_agreement",
                       "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "machine": {"platform": platform.platform(), "threads": args.threads},
                       "settings": vars(args), "rows": rows, "summary": summary}, handle, indent=1)


if __name__ == "__main__":
    main()
