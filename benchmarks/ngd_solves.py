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

A row may set NGD's Fisher (``fisher``, ``unlabeled``) and its own lr (:class:`Row`), and
name the solves it is timed with. Where the per-run loop has no such Fisher (an unlabeled
pool needs the batched solves) only the batched path is timed, and the row says why.

    python benchmarks/ngd_solves.py --repeats 5 --out benchmarks/results/ngd/ngd_batched.json
    python benchmarks/ngd_solves.py --rows completion --out benchmarks/results/ngd/NAME.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

import volumelab as vl
from volumelab._rng import make_generator
from volumelab.errors import OptimizerError
from volumelab.models import DiagonalNetwork, MLPModel
from volumelab.optimizers.gradient import _objective_for
from volumelab.optimizers.natural_gradient import _pick
from volumelab.optimizers.observers import FinalOutputs
from volumelab.problems import make_supervised

HERE = Path(__file__).resolve().parent
LR, DAMPING, INIT = 0.1, 1e-3, 0.3
SEEDS = (1, 8)
SOLVES = ("dense", "dual", "cg")


@dataclasses.dataclass(frozen=True)
class PerRunNGD(vl.NaturalGradientDescent):
    """The code before: one run at a time."""

    per_run_solves = True


@dataclasses.dataclass(frozen=True)
class Row:
    """One benchmark configuration.

    Attributes:
        name: What the tables call it.
        problem, model: What NGD runs on.
        steps: Steps of each timed ``run_batch``.
        settings: NGD settings besides the module's ``LR``, ``INIT`` and ``DAMPING`` (``fisher``,
            ``unlabeled``; ``lr`` replaces ``LR``), as keyword arguments of ``NaturalGradientDescent``.
        solves: The solves it is timed with.
    """

    name: str
    problem: object
    model: object
    steps: int
    settings: dict = dataclasses.field(default_factory=dict)
    solves: tuple[str, ...] = SOLVES

    def ngd_settings(self, solve: str) -> dict:
        """``NaturalGradientDescent``'s keyword arguments for ``solve`` on this row."""
        return {"lr": LR, "init_scale": INIT, "damping": DAMPING, **self.settings, "solve": solve}


def configurations() -> list[Row]:
    sensing = vl.make_sensing(5, 5, 1, 15, seed=0)
    digits = make_supervised("digits", 100, seed=0)
    # The closed-form Jacobians of 4602be4: a linear factorization's (_ProductJacobian: a completion task's
    # training entries, or every entry for the population Fisher) and a linear predictor's on supervised data
    # (_LinearPredictorJacobian: the population Fisher over an unlabeled pool, whose n + M > P rows make auto dense).
    completion = vl.make_completion(20, 20, 1, 120, seed=0)
    sparse = make_supervised("sparse_teacher", 20, seed=0, loss="logistic", num_test=1000, num_features=30)
    population = {"fisher": "population", "unlabeled": 4096}
    return [
        Row("factorization d2 k5 (P 50, m 15)", sensing, vl.FactorizationModel(5, 5, 5, 2), 100),
        Row("factorization d3 k20 tanh (P 600, m 15)", sensing, vl.FactorizationModel(5, 5, 20, 3, "tanh"), 30),
        Row("MLP digits d2 k16 tanh (P 1040, n 100)", digits, MLPModel(64, 16, 2, "tanh"), 10),
        Row("completion 20x20 d4 k20 (P 1600, m 120)", completion, vl.FactorizationModel(20, 20, 20, 4), 150,
            solves=("dual",)),
        Row("completion 20x20 d4 k20, population Fisher (P 1600, 400 rows)", completion,
            vl.FactorizationModel(20, 20, 20, 4), 50, {"fisher": "population"}, ("dual",)),
        Row("deep linear MLP sparse teacher d2 k10, population Fisher (P 310, n 20, M 4096)", sparse,
            MLPModel(30, 10, 2, "linear"), 30, population, ("dense",)),
        Row("diagonal network sparse teacher d2, population Fisher (P 60, n 20, M 4096)", sparse,
            DiagonalNetwork(30, 2, "difference"), 100, population, ("dense",)),
    ]


def select(rows: list[Row], patterns: list[str] | None) -> list[int]:
    """The indices of the rows whose name contains one of ``patterns`` (every row for none)."""
    if not patterns:
        return list(range(len(rows)))
    chosen = [index for index, row in enumerate(rows) if any(pattern in row.name for pattern in patterns)]
    if not chosen:
        raise SystemExit(f"no row's name contains any of {patterns}; the rows: {[row.name for row in rows]}")
    return chosen


def reference_run(row: Row) -> torch.Tensor:
    """NGD written plainly (seed 0): jacrev, the dense damped Gauss-Newton matrix, torch.linalg.solve.

    The Fisher's rows: the training outputs (``fisher="train"``), every entry of a factorization's ``W``
    with curvature 1, or a supervised problem's unlabeled pool (drawn as NGD draws run 0's) with each point's
    curvature over ``M`` (``fisher="population"``); the gradient is always the training loss's."""
    settings = row.ngd_settings("dense")
    problem, model = row.problem, row.model
    fisher, lr, damping = settings.get("fisher", "train"), settings["lr"], settings["damping"]
    objective = _objective_for(model, [problem], torch.device("cpu"), torch.float64)
    tensors = objective.tensors
    theta = torch.cat([layer.reshape(-1) for layer in
                       model.initialize(settings["init_scale"], make_generator(0, "init"), dtype=torch.float64)])

    def train_outputs(flat):
        return tensors.train_outputs(model.outputs(objective.layers(flat.unsqueeze(0)), tensors))[0]

    if fisher == "train":
        fisher_outputs = train_outputs

        def curvature(outputs):
            return tensors.loss_derivatives(outputs)[1]
    elif model.scores_array:
        def fisher_outputs(flat):
            return model.outputs(objective.layers(flat.unsqueeze(0)), tensors)[0].flatten()

        def curvature(outputs):
            return torch.ones_like(outputs)
    else:
        count = settings["unlabeled"]
        pool = problem.unlabeled_inputs(count, make_generator(0, "unlabeled")).to(torch.float64)
        at_pool = tensors.training_view().on_inputs(pool)

        def fisher_outputs(flat):
            return model.outputs(objective.layers(flat.unsqueeze(0)), at_pool)[0]

        def curvature(outputs):
            return at_pool.curvature(outputs) / count

    eye = torch.eye(theta.numel(), dtype=torch.float64)
    for _ in range(row.steps):
        train_jacobian = torch.func.jacrev(train_outputs)(theta)
        gradient = train_jacobian.T @ tensors.loss_derivatives(train_outputs(theta))[0]
        jacobian = train_jacobian if fisher == "train" else torch.func.jacrev(fisher_outputs)(theta)
        second = curvature(fisher_outputs(theta))
        system = jacobian.T @ (second.unsqueeze(1) * jacobian) + damping * eye
        theta = theta - lr * torch.linalg.solve(system, gradient)
    return theta


def final_parameters(result, model) -> torch.Tensor:
    return torch.cat([torch.as_tensor(result.arrays[f"layer_{j + 1}"]).reshape(-1)
                      for j in range(len(model.layer_shapes))])


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def per_run_unavailable(row: Row) -> str | None:
    """Why the per-run loop cannot run ``row``'s settings (its own error), or ``None`` where it can."""
    try:
        PerRunNGD(**row.ngd_settings(row.solves[0])).init([row.problem], row.model, [0])
    except OptimizerError as error:
        return str(error)
    return None


def compare(row: Row, solve: str, num_seeds: int, repeats: int, with_per_run: bool = True) -> dict:
    """Interleaved repeats of the per-run loop and the batched path; medians, ratio, agreement (the batched path
    alone when ``with_per_run`` is false)."""
    settings = row.ngd_settings(solve)
    paths = {"per_run": PerRunNGD(**settings), "batched": vl.NaturalGradientDescent(**settings)}
    if not with_per_run:
        del paths["per_run"]
    seconds = {name: [] for name in paths}
    results = {}
    seeds = list(range(num_seeds))
    for repeat in range(repeats):
        order = list(paths) if repeat % 2 == 0 else list(reversed(paths))
        for name in order:
            start = time.perf_counter()
            results[name] = paths[name].run_batch([row.problem], row.model, row.steps, seeds,
                                                  observers=[FinalOutputs()])
            seconds[name].append(time.perf_counter() - start)
    rates = {name: row.steps / statistics.median(values) for name, values in seconds.items()}
    statuses = sorted({r.status for path in results.values() for r in path})
    entry = {"seeds": num_seeds, "per_run_steps_per_s": None, "batched_steps_per_s": rates["batched"],
             "ratio": None, "paired_ratio": None, "seconds": seconds, "max_relative_difference": None,
             "statuses": statuses, "batched_seed0": final_parameters(results["batched"][0], row.model)}
    if with_per_run:
        # Each repeat times both paths back to back: the median of the per-repeat ratios is robust to slow changes
        # in the machine's load (other processes on a shared machine).
        entry.update(per_run_steps_per_s=rates["per_run"], ratio=rates["batched"] / rates["per_run"],
                     paired_ratio=statistics.median(old / new for old, new in zip(seconds["per_run"],
                                                                                    seconds["batched"])),
                     max_relative_difference=max(
                         relative(final_parameters(b, row.model), final_parameters(a, row.model))
                         for a, b in zip(results["per_run"], results["batched"])))
    return entry


def fisher_rows(row: Row) -> int:
    """The rows of ``row``'s Fisher (what ``auto`` compares with the parameters)."""
    settings = row.ngd_settings("auto")
    if settings.get("fisher", "train") == "train":
        return row.problem.num_train
    if row.model.scores_array:
        return math.prod(row.problem.shape)
    return row.problem.num_train + settings["unlabeled"]


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
    parser.add_argument("--rows", nargs="*", help="time only the rows whose name contains one of these")
    args = parser.parse_args()
    torch.set_num_threads(1)
    facts = machine()  # the commit and working tree as the timed code was imported
    load_before = os.getloadavg()
    rows = []
    configured = configurations()
    for index in select(configured, args.rows):
        row = configured[index]
        reference = reference_run(row)
        missing = per_run_unavailable(row)
        record = {"configuration": row.name, "steps": row.steps, "parameters": row.model.num_parameters,
                  "train_outputs": row.problem.num_train, "settings": row.settings,
                  "fisher_rows": fisher_rows(row),
                  "auto_picks": _pick("auto", fisher_rows(row), row.model.num_parameters),
                  "per_run_unavailable": missing, "solves": {}}
        for solve in row.solves:
            entries = []
            for num_seeds in SEEDS:
                entry = compare(row, solve, num_seeds, args.repeats, with_per_run=missing is None)
                entry["relative_difference_to_reference"] = relative(entry.pop("batched_seed0"), reference)
                entries.append(entry)
                if missing is None:
                    timing = (f"per-run {entry['per_run_steps_per_s']:8.1f}/s  "
                              f"batched {entry['batched_steps_per_s']:8.1f}/s  "
                              f"x{entry['ratio']:.2f} (paired x{entry['paired_ratio']:.2f})  "
                              f"(paths differ by {entry['max_relative_difference']:.1e}, ")
                else:
                    timing = f"batched {entry['batched_steps_per_s']:8.1f}/s (no per-run loop)  ("
                print(f"{row.name:42s} {solve:5s} {num_seeds} seed(s): {timing}reference differs by "
                      f"{entry['relative_difference_to_reference']:.1e})", flush=True)
            record["solves"][solve] = entries
        rows.append(record)
    payload = {"machine": {**facts, "load_average_before": load_before, "load_average_after": os.getloadavg()},
               "repeats": args.repeats, "lr": LR, "damping": DAMPING, "init_scale": INIT,
               "rows_selected": args.rows, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
