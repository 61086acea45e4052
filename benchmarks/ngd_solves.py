"""NGD steps/s for each solve, against a straightforward dense implementation, in one run.

For each configuration it times ``NaturalGradientDescent(solve=...)`` with ``dense``,
``dual`` and ``cg`` (one run, one thread, float64), and a plain reference written here:
per step, the Jacobian of the training outputs with ``torch.func.jacrev``, the damped
Gauss-Newton matrix ``J^T diag(h) J + lambda I`` and ``torch.linalg.solve``. It reports the
median steps/s over repeats, each solve's ratio to the reference, which solve ``auto``
picks, and the largest relative difference between each solve's final parameters and the
reference's (the same steps from the same start).

    python benchmarks/ngd_solves.py --repeats 3 --out benchmarks/results/ngd/ngd_solves.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import volumelab as vl
from volumelab._rng import make_generator
from volumelab.models import MLPModel
from volumelab.optimizers.gradient import _objective_for
from volumelab.optimizers.natural_gradient import _pick
from volumelab.problems import make_supervised

HERE = Path(__file__).resolve().parent
LR, DAMPING, INIT = 0.1, 1e-3, 0.3


def configurations():
    sensing = vl.make_sensing(5, 5, 1, 15, seed=0)
    digits = make_supervised("digits", 100, seed=0)
    return [
        ("factorization d2 k5 (P 50, m 15)", sensing, vl.FactorizationModel(5, 5, 5, 2), 30),
        ("factorization d3 k20 (P 600, m 15)", sensing, vl.FactorizationModel(5, 5, 20, 3, "tanh"), 10),
        ("MLP digits d2 k16 (P 1040, n 100)", digits, MLPModel(64, 16, 2, "tanh"), 5),
    ]


def reference_run(problem, model, steps: int) -> torch.Tensor:
    """NGD written plainly: jacrev, the dense damped Gauss-Newton matrix, torch.linalg.solve."""
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


def timed(function, repeats: int) -> tuple[float, object]:
    rates, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        rates.append(time.perf_counter() - start)
    return statistics.median(rates), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ngd" / "ngd_solves.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name, problem, model, steps in configurations():
        seconds, reference = timed(lambda: reference_run(problem, model, steps), args.repeats)
        row = {"configuration": name, "steps": steps, "parameters": model.num_parameters,
               "train_outputs": problem.num_train, "auto_picks": _pick("auto", problem.num_train, model.num_parameters),
               "reference_steps_per_s": steps / seconds, "solves": {}}
        for solve in ("dense", "dual", "cg"):
            optimizer = vl.NaturalGradientDescent(lr=LR, init_scale=INIT, damping=DAMPING, solve=solve,
                                                  keep_outputs=True)
            solve_seconds, result = timed(lambda: optimizer.run(problem, model, steps, seed=0), args.repeats)
            final = torch.cat([torch.from_numpy(result.arrays[f"layer_{j + 1}"]).reshape(-1)
                               for j in range(len(model.layer_shapes))])
            difference = float((final - reference).norm() / reference.norm())
            row["solves"][solve] = {"steps_per_s": steps / solve_seconds,
                                    "ratio_to_reference": seconds / solve_seconds,
                                    "relative_difference_to_reference": difference, "status": result.status}
        rows.append(row)
        print(f"{name:38s} reference {row['reference_steps_per_s']:8.1f}/s  " + "  ".join(
            f"{s} {v['steps_per_s']:8.1f}/s (x{v['ratio_to_reference']:.2f}, diff {v['relative_difference_to_reference']:.1e})"
            for s, v in row["solves"].items()) + f"  auto -> {row['auto_picks']}", flush=True)
    payload = {"machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                           "torch": torch.__version__, "threads": 1},
               "repeats": args.repeats, "lr": LR, "damping": DAMPING, "init_scale": INIT, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
