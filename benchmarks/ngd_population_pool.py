"""How many unlabeled inputs a supervised population Fisher needs before NGD's result stops changing.

NGD with ``fisher="population"`` averages the model's Fisher over ``M`` unlabeled inputs
drawn like the training inputs: a Monte Carlo estimate of the Fisher over the input
distribution, whose error shrinks like ``1 / sqrt(M)``. For each problem, each ``M`` of a
doubling ladder and a reference ``M`` far above it, this runs NGD from the same starts
and reports, against the reference (medians over seeds):

* ``cosine``: the cosine between the first step's direction and the reference's;
* ``gen_change``: ``|L_gen(M) - L_gen(ref)| / L_gen(ref)`` after all steps;
* ``weights_change``: ``||theta(M) - theta(ref)|| / ||theta(ref)||`` after all steps;

and the same between two references drawn from independent pools (``floor``: how much
the result moves at the reference's ``M`` itself).

The default ``M`` (:data:`volumelab.optimizers.natural_gradient.DEFAULT_UNLABELED`) is
the smallest ``M`` of the ladder from which on, on every problem, the first step's
cosine to the reference is at least 0.99. The runs after many steps do not settle as
fast: how far they move with the pool is set by the damping (the Monte Carlo error of
``G`` against ``lambda`` in ``G``'s small directions), which ``--damping`` lets one see.

    python benchmarks/ngd_population_pool.py --out benchmarks/results/ngd/population_pool.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
from pathlib import Path

import torch

import volumelab as vl
from volumelab._rng import make_generator
from volumelab.models import DiagonalNetwork, MLPModel
from volumelab.optimizers.natural_gradient import natural_gradient_directions
from volumelab.problems import make_supervised

HERE = Path(__file__).resolve().parent
LADDER = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
REFERENCE = 32768
COSINE = 0.99


def problems():
    return [
        ("sparse teacher d20, 20 points, logistic; diagonal network depth 2 (P 40)",
         make_supervised("sparse_teacher", 20, seed=0, num_features=20, num_test=2000), DiagonalNetwork(20, 2),
         dict(lr=0.1, init_scale=0.5, damping=1e-3), 30),
        ("teacher d5, 30 points, squared; MLP tanh width 8 depth 2 (P 48)",
         make_supervised("teacher", 30, seed=0, num_features=5, num_test=2000), MLPModel(5, 8, 2, "tanh"),
         dict(lr=0.1, init_scale=1.0, damping=1e-3), 30),
        ("linear teacher d10, 20 points, logistic; MLP tanh width 8 depth 2 (P 88)",
         make_supervised("linear_teacher", 20, seed=0, num_features=10, num_test=2000), MLPModel(10, 8, 2, "tanh"),
         dict(lr=0.1, init_scale=1.0, damping=1e-3), 30),
    ]


def pools(problem, count: int, seeds, replicate: int = 0) -> torch.Tensor:
    """Each seed's ``count`` unlabeled inputs ``(S, M, d)``; replicate 0 is what NGD draws, others fresh draws."""
    indices = () if replicate == 0 else (replicate,)
    return torch.stack([problem.unlabeled_inputs(count, make_generator(seed, "unlabeled", *indices))
                        for seed in seeds])


def train(problem, model, settings, steps: int, seeds, pool: torch.Tensor):
    """NGD's loop with the given pools: ``(first directions (S, P), final params (S, P), gen losses (S,), ok (S,))``."""
    optimizer = vl.NaturalGradientDescent(fisher="population", unlabeled=pool.shape[1], **settings)
    state = optimizer.init([problem], model, seeds)
    state.objective.unlabeled_inputs = pool.to(state.params)
    _loss, gradient = state.objective.train_loss_and_gradient(state.params)
    first, failures, _ = natural_gradient_directions(
        state.objective, state.params, gradient.clone(), torch.ones(len(seeds), dtype=torch.bool),
        damping=settings["damping"], fisher="population", unlabeled=state.objective.unlabeled_inputs)
    assert not failures, failures
    for _ in range(steps):
        optimizer.step(state)
    _train, gen = state.objective.losses(state.params)
    ok = state.active & torch.isfinite(gen)
    return first, state.params.clone(), gen, ok


def changes(result, reference) -> dict:
    """Median over seeds of the first-step cosine and the final changes of ``result`` against ``reference``."""
    first, params, gen, ok = result
    first_ref, params_ref, gen_ref, ok_ref = reference
    both = (ok & ok_ref).tolist()
    cosine = torch.nn.functional.cosine_similarity(first, first_ref, dim=1).tolist()
    # A run without a result (diverged, solve failed) counts as changed without bound.
    gen_change = [abs(float(a - b)) / float(b) if good else math.inf for a, b, good in zip(gen, gen_ref, both)]
    weights = [float((a - b).norm() / b.norm()) if good else math.inf
               for a, b, good in zip(params, params_ref, both)]
    return {"cosine": statistics.median(cosine), "gen_change": statistics.median(gen_change),
            "weights_change": statistics.median(weights), "completed": int(sum(ok.tolist()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--damping", type=float, default=None, help="replace every problem's damping (1e-3)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ngd" / "population_pool.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    rows = []
    for name, problem, model, settings, steps in problems():
        if args.damping is not None:
            settings = {**settings, "damping": args.damping}
        reference = train(problem, model, settings, steps, seeds, pools(problem, REFERENCE, seeds))
        # Two references from independent pools: how much the result moves at M = REFERENCE itself.
        floor = changes(train(problem, model, settings, steps, seeds, pools(problem, REFERENCE, seeds, 1)), reference)
        print(f"{name[:40]:40s} floor (two pools of {REFERENCE}): cosine {floor['cosine']:.5f}  gen change "
              f"{floor['gen_change']:.2e}  weights change {floor['weights_change']:.2e}", flush=True)
        entries = []
        for count in LADDER:
            entry = {"unlabeled": count, **changes(train(problem, model, settings, steps, seeds,
                                                         pools(problem, count, seeds)), reference)}
            entries.append(entry)
            print(f"{name[:40]:40s} M {count:5d}: cosine {entry['cosine']:.5f}  gen change {entry['gen_change']:.2e}  "
                  f"weights change {entry['weights_change']:.2e}", flush=True)
        rows.append({"problem": name, "steps": steps, "settings": settings, "reference_unlabeled": REFERENCE,
                     "reference_gen_loss": statistics.median(reference[2].tolist()), "floor": floor,
                     "ladder": entries})
    enough = [min((e["unlabeled"] for e in row["ladder"] if all(
        later["cosine"] >= COSINE for later in row["ladder"] if later["unlabeled"] >= e["unlabeled"])), default=None)
        for row in rows]
    chosen = None if None in enough else max(enough)
    print(f"smallest M with a first-step cosine >= {COSINE} from there on: {enough}; default: {chosen}")
    payload = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "torch": torch.__version__}, "seeds": seeds, "damping": args.damping, "criterion": {
        "first_step_cosine_at_least": COSINE}, "enough_per_problem": enough,
        "chosen": chosen, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
