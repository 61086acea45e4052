"""NGD steps/s for each solve: the batched path against the per-run loop it replaced, in one process.

For each configuration, each solve (``dense``, ``dual``, ``cg``) and 1 and 8 seeds, it
times ``NaturalGradientDescent(solve=...).run_batch`` twice over: with the batched solves
(the default: one Jacobian call and one factorization per step for all runs) and with
``per_run_solves`` (the code before: one ``jacrev`` and one solve per run per step, the
dual by LU). Repeats alternate the two (old, new, new, old, ...), so a change in the
machine's load hits both; it reports the median steps/s of each, their ratio (and the
median of the per-repeat ratios), and the
largest relative difference between the two paths' final parameters (same steps from the
same start). It also checks each batched solve against a plain dense NGD written here
(``torch.func.jacrev``, the damped Gauss-Newton matrix, ``torch.linalg.solve``; 1 seed).

    python benchmarks/ngd_solves.py --repeats 5 --out benchmarks/results/ngd/ngd_batched.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

import volumelab as vl
from volumelab._rng import make_generator
from volumelab.models import MLPModel
from volumelab.optimizers.gradient import _objective_for
from volumelab.optimizers.natural_gradient import _pick
from volumelab.optimizers.observers import FinalOutputs
from volumelab.problems import make_supervised

HERE = Path(__file__).resolve().parent
LR, DAMPING, INIT = 0.1, 1e-3, 0.3
SEEDS = (1, 8)


@dataclasses.dataclass(frozen=True)
class PerRunNGD(vl.NaturalGradientDescent):
    """The code before: one run at a time."""

    per_run_solves = True


def configurations():
    sensing = vl.make_sensing(5, 5, 1, 15, seed=0)
    digits = make_supervised("digits", 100, seed=0)
    return [
        ("factorization d2 k5 (P 50, m 15)", sensing, vl.FactorizationModel(5, 5, 5, 2), 100),
        ("factorization d3 k20 tanh (P 600, m 15)", sensing, vl.FactorizationModel(5, 5, 20, 3, "tanh"), 30),
        ("MLP digits d2 k16 tanh (P 1040, n 100)", digits, MLPModel(64, 16, 2, "tanh"), 10),
    ]


def reference_run(problem, model, steps: int) -> torch.Tensor:
    """NGD written plainly (seed 0): jacrev, the dense damped Gauss-Newton matrix, torch.linalg.solve."""
    objective = _objective_for(model, [problem], torch.device("cpu"), torch.float64)
    tensors = objective.tensors
    theta = torch.cat([layer.reshape(-1) for layer in
                       model.initialize(INIT, make_generator(0, "init"), dtype=torch.float64)])

    def train_outputs(flat):
        return tensors.train_outputs(model.outputs(objective.layers(flat.unsqueeze(0)), tensors))[0]

    eye = torch.eye(theta.numel(), dtype=torch.float64)
    for _ in range(steps):
        jacobian = torch.func.jacrev(train_outputs)(theta)
        first, second = tensors.loss_derivatives(train_outputs(theta))
        system = jacobian.T @ (second.unsqueeze(1) * jacobian) + DAMPING * eye
        theta = theta - LR * torch.linalg.solve(system, jacobian.T @ first)
    return theta


def final_parameters(result, model) -> torch.Tensor:
    return torch.cat([torch.as_tensor(result.arrays[f"layer_{j + 1}"]).reshape(-1)
                      for j in range(len(model.layer_shapes))])


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def compare(problem, model, steps: int, solve: str, num_seeds: int, repeats: int) -> dict:
    """Interleaved repeats of the per-run loop and the batched path; medians, ratio, agreement."""
    settings = dict(lr=LR, init_scale=INIT, damping=DAMPING, solve=solve)
    paths = {"per_run": PerRunNGD(**settings), "batched": vl.NaturalGradientDescent(**settings)}
    seconds = {name: [] for name in paths}
    results = {}
    seeds = list(range(num_seeds))
    for repeat in range(repeats):
        order = list(paths) if repeat % 2 == 0 else list(reversed(paths))
        for name in order:
            start = time.perf_counter()
            results[name] = paths[name].run_batch([problem], model, steps, seeds, observers=[FinalOutputs()])
            seconds[name].append(time.perf_counter() - start)
    rates = {name: steps / statistics.median(values) for name, values in seconds.items()}
    # Each repeat times both paths back to back: the median of the per-repeat ratios is robust to slow changes in
    # the machine's load (other processes on a shared machine).
    paired = statistics.median(old / new for old, new in zip(seconds["per_run"], seconds["batched"]))
    difference = max(relative(final_parameters(b, model), final_parameters(a, model))
                     for a, b in zip(results["per_run"], results["batched"]))
    statuses = sorted({r.status for path in results.values() for r in path})
    return {"seeds": num_seeds, "per_run_steps_per_s": rates["per_run"], "batched_steps_per_s": rates["batched"],
            "ratio": rates["batched"] / rates["per_run"], "paired_ratio": paired, "seconds": seconds,
            "max_relative_difference": difference, "statuses": statuses,
            "batched_seed0": final_parameters(results["batched"][0], model)}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "intra_op_threads": 1, "commit": commit, "uncommitted_changes": dirty}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ngd" / "ngd_batched.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    facts = machine()  # the commit and working tree as the timed code was imported
    load_before = os.getloadavg()
    rows = []
    for name, problem, model, steps in configurations():
        reference = reference_run(problem, model, steps)
        row = {"configuration": name, "steps": steps, "parameters": model.num_parameters,
               "train_outputs": problem.num_train, "auto_picks": _pick("auto", problem.num_train, model.num_parameters),
               "solves": {}}
        for solve in ("dense", "dual", "cg"):
            entries = []
            for num_seeds in SEEDS:
                entry = compare(problem, model, steps, solve, num_seeds, args.repeats)
                entry["relative_difference_to_reference"] = relative(entry.pop("batched_seed0"), reference)
                entries.append(entry)
                print(f"{name:42s} {solve:5s} {num_seeds} seed(s): per-run {entry['per_run_steps_per_s']:8.1f}/s  "
                      f"batched {entry['batched_steps_per_s']:8.1f}/s  x{entry['ratio']:.2f} "
                      f"(paired x{entry['paired_ratio']:.2f})  "
                      f"(paths differ by {entry['max_relative_difference']:.1e}, reference by "
                      f"{entry['relative_difference_to_reference']:.1e})", flush=True)
            row["solves"][solve] = entries
        rows.append(row)
    payload = {"machine": {**facts, "load_average_before": load_before, "load_average_after": os.getloadavg()},
               "repeats": args.repeats, "lr": LR, "damping": DAMPING, "init_scale": INIT, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
