"""The exact readout kernel against today's pCN kernel at equal model evaluations (issue 33, item 1).

The issue's case: ``volumelab gnc --model mlp --data digits --classes 3,8 --train 64 --width 16 --depth 2
--accept train_error --eps 0 --method subset --samples 1e6``, once with ``--kernel pcn`` (the default) and once with
``--kernel pcn-exact`` (:class:`volumelab.optimizers.subset.ExactReadout`: each pCN step followed by an exact move
of the readout inside the training-error constraint; two evaluations per step). Both kernels run the same seeds
with the same budget, one run at a time on one thread, in this process, so their wall times compare. Recorded per
run: status, ``log_volume`` and its SE, split-R-hat, ESS and ESS per evaluation, the test error and its SE, the
evaluations spent and the wall time; per kernel, the spread of ``log_volume`` over the seeds (agreement between
independent runs: a chi-square of the ``ok`` runs' estimates about their SE-weighted mean).

    python benchmarks/exact_readout.py --seeds 0,1,2,3 --out benchmarks/results/exact_readout.json
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


def run(kernel: str, budget: int, seed: int, num_train: int, width: int) -> dict:
    problem = make_supervised("digits", num_train, seed=0, classes=(3, 8))
    model = MLPModel(problem.num_features, width, 2)
    start = time.perf_counter()
    result = GuessCheck(eps=0, accept="train_error", method="subset", kernel=kernel).run(problem, model, budget,
                                                                                        seed=seed)
    seconds = time.perf_counter() - start
    metrics, errors = result.metrics, result.standard_errors
    ess = metrics.get("ess")
    return {"kernel": kernel, "seed": seed, "status": result.status, "log_volume": metrics.get("log_volume"),
            "log_volume_stderr": errors.get("log_volume"), "rhat": metrics.get("rhat"), "ess": ess,
            "ess_per_evaluation": ess / metrics["evaluations"] if ess else None,
            "test_error": metrics.get("test_error"), "test_error_stderr": errors.get("test_error"),
            "evaluations": metrics["evaluations"], "levels": len(result.diagnostics.get("ladder", [])),
            "seconds": seconds}


def agreement(runs: list[dict]) -> dict:
    """The ``ok`` runs' log volumes: their SE-weighted mean, the chi-square of their deviations and its dof."""
    ok = [r for r in runs if r["status"] == "ok"]
    if len(ok) < 2:
        return {"ok_runs": len(ok)}
    values = np.array([r["log_volume"] for r in ok])
    weights = 1 / np.array([r["log_volume_stderr"] for r in ok]) ** 2
    mean = float((weights * values).sum() / weights.sum())
    return {"ok_runs": len(ok), "weighted_mean": mean, "sd_over_seeds": float(values.std(ddof=1)),
            "chi_square": float((weights * (values - mean) ** 2).sum()), "dof": len(ok) - 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--budget", type=int, default=1_000_000)
    parser.add_argument("--train", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--kernels", default="pcn,pcn-exact")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for seed in seeds:
        for kernel in args.kernels.split(","):
            runs.append(run(kernel, args.budget, seed, args.train, args.width))
            print(json.dumps(runs[-1]), flush=True)
    summary = {kernel: agreement([r for r in runs if r["kernel"] == kernel]) for kernel in args.kernels.split(",")}
    print(json.dumps(summary, indent=1))
    if args.out:
        record = {"benchmark": "exact_readout", "date": datetime.now(timezone.utc).isoformat(),
                  "machine": platform.processor() or platform.machine(), "threads": 1, "budget": args.budget,
                  "train": args.train, "width": args.width, "runs": runs, "summary": summary}
        with open(args.out, "w") as handle:
            json.dump(record, handle, indent=1)


if __name__ == "__main__":
    main()
