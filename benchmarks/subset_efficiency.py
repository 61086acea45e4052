"""Time to a standard error of 0.002 on G&C's generalization loss: subset simulation against rejection.

The paper's depth setting (arXiv 2506.03931, Fig. 2): rank-1 5 x 5 sensing with 15
measurements (the figure's problem, data seed 0), width 5, depth 6, linear, normalized
Gaussian prior. Both methods run in this process, in the same run, on all cores:

* **rejection** (``GuessCheck(method="rejection")``, the project's fastest exact sampler,
  ``auto``): runs of ``--rejection-draws`` prior draws, seeds 0, 1, ..., until the
  accepted draws of all runs together give a standard error of the mean generalization
  loss at or below the target (``sd / sqrt(accepted)``). Its time to the target is that
  measured wall time. At eps 0.001 rejection would need hours; its time there is
  **extrapolated**, labelled so: ``sd^2 / target^2`` accepted draws at the measured draw
  rate, with the acceptance probability from subset simulation's ``log_volume`` and ``sd``
  the spread of subset simulation's final draws.
* **subset** (``GuessCheck(method="subset")`` with its defaults: pCN kernel, population
  500, 5 moves per state, 8 replicates; and the elliptical slice kernel, population 2000
  and one move per state, for comparison): for each budget
  in ``--budgets``, ``--seeds`` runs; the first budget whose median standard error over
  the seeds is at or below the target gives subset simulation's time (the median wall
  time of those runs) if every run there ended with status ``ok`` (a run flagged
  ``not_mixed``, or one whose budget was too small, disqualifies the budget).

The ratio of the two times is the speed-up. Results also record every run's estimate, so
the two methods' agreement can be read next to the timing.

    python benchmarks/subset_efficiency.py --out benchmarks/results/subset_efficiency.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from datetime import datetime, timezone

import torch

from volumelab.models import FactorizationModel
from volumelab.optimizers import GuessCheck
from volumelab.problems.core import make_sensing

TARGET = 0.002
#: Subset simulation's settings per kernel: pCN with the defaults (population 500, 5 moves per state);
#: the slice kernel spends several evaluations per move, so one move per state and a larger population.
KERNELS = {"pcn": {"kernel": "pcn"}, "slice": {"kernel": "slice", "population": 2000, "moves": 1}}


def setting():
    problem = make_sensing(5, 5, 1, 15, seed=0)
    model = FactorizationModel(5, 5, 5, 6, activation="linear", normalize=True)
    return problem, model


def rejection_to_target(problem, model, eps: float, draws: int, max_seconds: float) -> dict:
    """Rejection runs (seeds 0, 1, ...) until the pooled SE of the accepted draws' gen loss is <= TARGET."""
    values, total_draws, seconds, runs = [], 0, 0.0, 0
    while True:
        start = time.perf_counter()
        result = GuessCheck(eps=eps, keep_samples=10_000).run(problem, model, draws, seed=runs)
        seconds += time.perf_counter() - start
        runs += 1
        total_draws += draws
        values += list(result.arrays.get("gen_loss", []))
        se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 2 else math.inf
        print(f"  rejection eps={eps}: {runs} runs, {total_draws:.3g} draws, {len(values)} accepted, SE {se:.4f}, "
              f"{seconds:.1f} s", flush=True)
        if se <= TARGET or seconds > max_seconds:
            break
    return {"eps": eps, "runs": runs, "draws": total_draws, "accepted": len(values), "seconds": seconds,
            "seconds_to_target": seconds * (se / TARGET) ** 2,
            "draws_per_second": total_draws / seconds, "gen_loss": statistics.fmean(values) if values else None,
            "gen_loss_stderr": se, "reached_target": se <= TARGET,
            "acceptance_rate": len(values) / total_draws}


def subset_to_target(problem, model, eps: float, budgets: list[int], seeds: int, kernel: str) -> dict:
    """Subset runs at increasing budgets until the median SE over ``seeds`` runs is <= TARGET."""
    tried = []
    for budget in budgets:
        runs = []
        for seed in range(seeds):
            start = time.perf_counter()
            result = GuessCheck(eps=eps, method="subset", **KERNELS[kernel]).run(problem, model, budget, seed=seed)
            runs.append({"seed": seed, "seconds": time.perf_counter() - start, "status": result.status,
                         "gen_loss": result.metrics["gen_loss"],
                         "gen_loss_stderr": result.standard_errors.get("gen_loss"),
                         "log_volume": result.metrics["log_volume"],
                         "log_volume_stderr": result.standard_errors.get("log_volume"),
                         "ess": result.metrics["ess"], "rhat": result.metrics["rhat"],
                         "evaluations": result.metrics["evaluations"],
                         "final_sd": (result.standard_errors["gen_loss"] * math.sqrt(result.metrics["ess"])
                                      if result.metrics.get("ess") else None)})
        errors = [run["gen_loss_stderr"] if run["gen_loss_stderr"] is not None else math.inf for run in runs]
        entry = {"budget": budget, "runs": runs, "median_seconds": statistics.median(r["seconds"] for r in runs),
                 "median_stderr": statistics.median(errors)}
        tried.append(entry)
        print(f"  subset ({kernel}) eps={eps} budget {budget:.3g}: median SE {entry['median_stderr']:.4f}, median "
              f"{entry['median_seconds']:.2f} s, statuses {[r['status'] for r in runs]}", flush=True)
        # Every run must give a trusted estimate (status "ok"), and their median SE meet the target.
        if entry["median_stderr"] <= TARGET and all(run["status"] == "ok" for run in runs):
            return {"eps": eps, "kernel": kernel, "tried": tried, "reached_target": True,
                    "seconds": entry["median_seconds"], "budget": budget,
                    "flagged": sum(r["status"] != "ok" for r in entry["runs"])}
    return {"eps": eps, "kernel": kernel, "tried": tried, "reached_target": False, "seconds": None, "budget": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rejection-draws", type=int, default=20_000_000)
    parser.add_argument("--rejection-max-seconds", type=float, default=600.0)
    parser.add_argument("--budgets", default="1e5,1.5e5,2e5,3e5,4e5,6e5,8e5")
    args = parser.parse_args()
    budgets = [int(float(b)) for b in args.budgets.split(",")]
    problem, model = setting()
    machine = {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
               "torch": torch.__version__, "threads": torch.get_num_threads()}
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine,
              "target_stderr": TARGET, "setting": {"problem": problem.summary(), "model": model.describe()},
              "cases": []}
    draws_per_second = None
    for eps in (0.0035, 0.001):
        print(f"eps {eps}", flush=True)
        case = {"eps": eps, "subset": {kernel: subset_to_target(problem, model, eps, budgets, args.seeds, kernel)
                                       for kernel in ("pcn", "slice")}}
        if eps == 0.0035:
            rejection = rejection_to_target(problem, model, eps, args.rejection_draws, args.rejection_max_seconds)
            case["rejection"] = rejection
            case["rejection_seconds"] = rejection["seconds_to_target"]
            case["rejection_time"] = (f"measured: {rejection['seconds']:.1f} s for SE {rejection['gen_loss_stderr']:.4f},"
                                      " scaled by (SE / 0.002)^2")
            draws_per_second = rejection["draws_per_second"]
        else:
            # Extrapolated: sd^2 / target^2 accepted draws, at the draw rate measured at eps 0.0035,
            # with the acceptance probability and sd from subset simulation (pCN) at this eps.
            best = [r for r in case["subset"]["pcn"]["tried"][-1]["runs"] if r["log_volume"] is not None]
            volume = math.exp(statistics.median(r["log_volume"] for r in best))
            sd = statistics.median(r["final_sd"] for r in best if r["final_sd"] is not None)
            case["rejection_seconds"] = (sd / TARGET) ** 2 / (volume * draws_per_second)
            case["rejection_time"] = ("extrapolated: (sd / 0.002)^2 accepted draws / (P(L < eps) x draws per second); "
                                      f"P = {volume:.3g} and sd = {sd:.4f} from subset simulation, "
                                      f"{draws_per_second:.3g} draws/s measured at eps 0.0035")
        for kernel, subset in case["subset"].items():
            if subset["seconds"]:
                case[f"speedup_{kernel}"] = case["rejection_seconds"] / subset["seconds"]
            print(f"eps {eps}: rejection {case['rejection_seconds']:.1f} s ({case['rejection_time']}), subset "
                  f"({kernel}) {subset['seconds']} s, speed-up {case.get(f'speedup_{kernel}')}", flush=True)
        report["cases"].append(case)
    text = json.dumps(report, indent=1)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    print(json.dumps([{k: c.get(k) for k in ("eps", "rejection_seconds", "rejection_time", "speedup_pcn",
                                              "speedup_slice")}
                      | {f"subset_{kernel}": {k: c["subset"][kernel].get(k) for k in ("seconds", "budget", "flagged")}
                         for kernel in ("pcn", "slice")}
                      for c in report["cases"]], indent=1))


if __name__ == "__main__":
    main()
