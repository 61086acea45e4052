"""Time to a standard error of 0.01 on G&C's test error at n = 64, 128, 256 (issue 33, item 5).

G&C conditioned on no training errors (``--accept train_error --eps 0``) on scikit-learn's digits 3 vs 8, a ReLU MLP
of width 64 and depth 2 under the Gaussian prior, one training set per n (seed 0). In one process, one run at a
time, the same seed and budget for each configuration of subset simulation:

- ``pcn / count``: the pCN kernel on the ladder of the error count alone (``tie_break="none"``), the sampler as the
  issue found it;
- ``pcn / margin``: the pCN kernel on the error count with its ties broken by the margins (the default since
  2026-12-06);
- ``pcn-exact / margin``: pCN on the hidden layers followed by the exact move of the readout.

Each run's time to an SE of 0.01 on the test error: where its SE ``s`` is already at most 0.01, the run's own
wall time ``T`` is an upper bound (``seconds_to_se_0.01_upper``; the ladder's cost is paid whatever the target, so
``T (s / 0.01)^2`` would understate it); where ``s`` is above 0.01 it is **extrapolated** as ``T (s / 0.01)^2``
(``seconds_to_se_0.01_extrapolated``: the standard error of a mean of Markov-chain states falls as one over the
square root of their number). The JSONs written on 2026-12-06 hold the raw ``T (s / 0.01)^2`` under the
extrapolated key for every run; benchmarks/RESULTS.md reads them as this paragraph says.
Rejection is **extrapolated** too, never run to that SE: its draws per second are measured here (``--rejection``
draws of the same model on the same data), the accepted draws it needs are ``Var / 0.01^2`` with ``Var`` the
conditional variance of the test error (a subset run's ``ess * SE^2``), and the draws per accepted draw are
``exp(-log_volume)`` from the subset run with the margin score.

    python benchmarks/time_to_se.py --budget 400000 --out benchmarks/results/time_to_se.json
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import datetime, timezone

import torch

from volumelab.models import MLPModel
from volumelab.optimizers import GuessCheck
from volumelab.problems import make_supervised

CONFIGS = (("pcn", "none"), ("pcn", "margin"), ("pcn-exact", "margin"))
TARGET = 0.01


def subset_run(problem, model, kernel: str, tie_break: str, budget: int, seed: int) -> dict:
    start = time.perf_counter()
    result = GuessCheck(eps=0, accept="train_error", method="subset", kernel=kernel, tie_break=tie_break).run(
        problem, model, budget, seed=seed)
    seconds = time.perf_counter() - start
    metrics, errors = result.metrics, result.standard_errors
    se = errors.get("test_error")
    row = {"kernel": kernel, "tie_break": tie_break, "status": result.status, "seconds": seconds,
           "evaluations": metrics.get("evaluations"), "log_volume": metrics.get("log_volume"),
           "log_volume_stderr": errors.get("log_volume"), "test_error": metrics.get("test_error"),
           "test_error_stderr": se, "ess": metrics.get("ess"), "rhat": metrics.get("rhat"),
           "levels": len(result.diagnostics.get("ladder", []))}
    if se is not None and se <= TARGET:
        row["seconds_to_se_0.01_upper"] = seconds
    elif se:
        row["seconds_to_se_0.01_extrapolated"] = seconds * (se / TARGET) ** 2
    return row


def rejection_rate(problem, model, draws: int) -> float:
    """Prior draws per second of rejection G&C on this model and data (its own sampler choice)."""
    start = time.perf_counter()
    GuessCheck(eps=0, accept="train_error").run(problem, model, draws, seed=0)
    return draws / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--budget", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rejection", type=int, default=200_000, help="prior draws timed for rejection's rate")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for num_train in [int(n) for n in args.sizes.split(",")]:
        problem = make_supervised("digits", num_train, seed=0, classes=(3, 8))
        model = MLPModel(problem.num_features, args.width, 2)
        runs = [subset_run(problem, model, kernel, tie_break, args.budget, args.seed) for kernel, tie_break in CONFIGS]
        rate = rejection_rate(problem, model, args.rejection)
        reference = next(r for r in runs if r["kernel"] == "pcn" and r["tie_break"] == "margin")
        rejection = {"kernel": "rejection", "draws_per_second": rate}
        if reference["test_error_stderr"] and reference["ess"] and reference["log_volume"] is not None:
            variance = reference["ess"] * reference["test_error_stderr"] ** 2
            draws = variance / TARGET ** 2 * math.exp(-reference["log_volume"])
            rejection.update({"draws_needed_extrapolated": draws,
                              "seconds_to_se_0.01_extrapolated": draws / rate})
        for row in (*runs, rejection):
            row["num_train"] = num_train
            rows.append(row)
            print(json.dumps(row), flush=True)
    payload = {"benchmark": "time_to_se", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "threads": args.threads}, "settings": vars(args), "rows": rows}
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(payload, handle, indent=1)


if __name__ == "__main__":
    main()
