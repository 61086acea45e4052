"""Mixing of subset simulation's kernels on the depth figures' G&C at quick scale, at equal model evaluations.

The setting of Figure 2 (and 4: the same G&C) of arXiv 2506.03931 at ``--scale quick``: rank-1 5 x 5 sensing
with 15 measurements (each seed's own problem, as the sweep makes it), width 5, the normalized Gaussian prior
with the paper's scaling, eps 0.0035, ``GuessCheck(method="subset")`` with 2x10^5 model evaluations per run and
the defaults otherwise (the figures themselves name ``pcn-readout:population=1000,replicates=4`` since
2026-12-06). For each ``activation:depth`` and each kernel in ``--kernels`` (a name of
:data:`~volumelab.optimizers.subset.KERNELS`, optionally with settings, ``pcn:population=250,moves=10``), the
same seeds run one after the other in this process (same run, same load); every run's status, split-R-hat,
ESS per evaluation, ``log_volume``, gen loss and wall time are recorded. Summaries per kernel and setting: runs
``not_mixed`` out of the seeds, median and largest R-hat, median ESS per evaluation, median wall time. The
spread of ``log_volume`` over the seeds mixes problems (each seed is its own problem); the spread between
**independent runs of one problem** comes from ``--repeat-seeds`` (run seeds 100, 101, ... on seed 0's
problem). ``--run-seed-offset`` draws each seed's run anew (run seed = problem seed + offset).

    python benchmarks/subset_mixing.py --kernels pcn pcn-readout --seeds 16 --repeat-seeds 8 \
        --settings leaky_relu:10 leaky_relu:6 --out benchmarks/results/subset_mixing.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone

from volumelab.models import FactorizationModel
from volumelab.optimizers import GuessCheck
from volumelab.problems.core import make_sensing

BUDGET = 200_000
EPS = 0.0035


def _number(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def parse_kernel(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition(":")
    settings = {"kernel": name}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        settings[key] = (int(value) if value.isdigit() else
                         {"true": True, "false": False}.get(value.lower(), _number(value)))
    return text, settings


def one_run(settings: dict, activation: str, depth: int, problem_seed: int, seed: int, budget: int = BUDGET) -> dict:
    problem = make_sensing(5, 5, 1, 15, seed=problem_seed, norm=1.0)
    model = FactorizationModel(5, 5, 5, depth, activation=activation, prior="gaussian", scaling="paper",
                               normalize=True, negative_slope=0.2)
    start = time.perf_counter()
    result = GuessCheck(eps=EPS, method="subset", **settings).run(problem, model, budget, seed=seed)
    seconds = time.perf_counter() - start
    metrics = result.metrics
    ess = metrics.get("ess")
    return {"problem_seed": problem_seed, "seed": seed, "status": result.status, "rhat": metrics.get("rhat"),
            "ess": ess, "evaluations": metrics.get("evaluations"),
            "ess_per_evaluation": ess / metrics["evaluations"] if ess and metrics.get("evaluations") else None,
            "log_volume": metrics.get("log_volume"), "log_volume_stderr": result.standard_errors.get("log_volume"),
            "log_volume_mean_log": metrics.get("log_volume_mean_log"), "gen_loss": metrics.get("gen_loss"),
            "gen_loss_stderr": result.standard_errors.get("gen_loss"), "seconds": seconds,
            "pcn_steps": result.diagnostics.get("pcn_steps")}


def summary(runs: list[dict]) -> dict:
    done = [run for run in runs if run["rhat"] is not None]
    med = lambda key: statistics.median([run[key] for run in done]) if done else None  # noqa: E731
    return {"runs": len(runs), "not_mixed": sum(run["status"] == "not_mixed" for run in runs),
            "not_ok": sum(run["status"] != "ok" for run in runs), "median_rhat": med("rhat"),
            "max_rhat": max(run["rhat"] for run in done) if done else None,
            "median_ess_per_evaluation": med("ess_per_evaluation"), "median_seconds": med("seconds"),
            "median_log_volume_stderr": med("log_volume_stderr"),
            "median_gen_loss_stderr": med("gen_loss_stderr"),
            "sd_log_volume": statistics.stdev([run["log_volume"] for run in done]) if len(done) > 1 else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kernels", nargs="+", default=["pcn"])
    parser.add_argument("--settings", nargs="+", default=["leaky_relu:10"], help="activation:depth")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--run-seed-offset", type=int, default=0,
                        help="run seed = problem seed + this (0: the sweep's runs; else another draw of each run)")
    parser.add_argument("--repeat-seeds", type=int, default=0,
                        help="also this many runs (seeds 100, ...) on seed 0's problem: the run-to-run spread")
    parser.add_argument("--budget", type=int, default=BUDGET, help="model evaluations per run (the figures': 2e5)")
    parser.add_argument("--out")
    args = parser.parse_args()
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "machine": platform.processor()
              or platform.machine(), "cpus": os.cpu_count(), "load_before": os.getloadavg(), "budget": args.budget,
              "eps": EPS, "run_seed_offset": args.run_seed_offset, "results": []}
    for text in args.settings:
        activation, depth = text.split(":")
        for label, settings in map(parse_kernel, args.kernels):
            runs = [one_run(settings, activation, int(depth), seed, seed + args.run_seed_offset, args.budget)
                    for seed in range(args.first_seed, args.first_seed + args.seeds)]
            repeats = [one_run(settings, activation, int(depth), 0, 100 + index, args.budget)
                       for index in range(args.repeat_seeds)]
            entry = {"activation": activation, "depth": int(depth), "kernel": label, "settings": settings,
                     "summary": summary(runs), "runs": runs}
            if repeats:
                entry["repeats"] = repeats
                entry["repeat_summary"] = summary(repeats)
            record["results"].append(entry)
            print(json.dumps({key: entry[key] for key in ("activation", "depth", "kernel", "summary")}), flush=True)
            for run in runs + repeats:
                print("   ", {key: (round(value, 4) if isinstance(value, float) else value)
                             for key, value in run.items() if key != "pcn_steps"}, flush=True)
    record["load_after"] = os.getloadavg()
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as handle:
            json.dump(record, handle, indent=1)


if __name__ == "__main__":
    main()
