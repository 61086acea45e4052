"""Why a depth figure's G&C run ends ``not_mixed``: replicates split between separated sets of interpolators.

Diagnostic for issue 33's fourth "Done when" (the leaky-ReLU panels of Figures 2 and 4). Setting: Figure 2's
quick G&C (``benchmarks/subset_mixing.py``'s: rank-1 5 x 5 sensing, 15 measurements, width 5, the normalized
Gaussian prior, eps 0.0035, ``kernel="pcn-readout"``, 2x10^5 evaluations; run seed = problem seed) with the
method's default population 500 and 8 replicates, the figures' setting until 2026-12-06 (since then they run
population 1000 with 4 replicates, chosen after this diagnostic; benchmarks/RESULTS.md).

For each problem seed, the run's chains at eps are captured (the last state of every chain of every replicate)
and their normalized end-to-end matrices ``U = W / ||W||`` are split into two clusters by k-means
(scikit-learn, 10 starts, on all replicates' states together). Per run it reports:

* ``separation``: the distance between the two cluster centres over the mean distance of a state to its own
  centre (large: two separated sets; about 1 or less: one blob cut in two);
* ``cosines``: each centre's cosine to the true ``W*`` (normalized);
* ``shares``: per replicate, the share of its states in the cluster with the larger centre cosine;
* ``gen_loss`` by cluster: the mean generalization loss of each cluster's states;
* ``rhat_states``: ``sqrt(1 + B / W)`` on the last states only (``B`` the variance of the replicates' means of
  the generalization loss, ``W`` the mean variance within a replicate), over all states and within each
  cluster (replicates with at least 10 states in it). When the within-cluster values are near 1 and the
  overall one is not, the replicates disagree because their shares of the two sets differ, not because the
  chains inside a set have not mixed.

With ``--levels`` it also follows the two sets up the ladder. Each state of every level is labelled by its
cosine to ``W*``: in the first set above the midpoint of the two centres' cosines plus a quarter of their gap, in
the second below the midpoint minus a quarter, else neither. Per level it reports:

* ``shares``: per replicate, the share of the level's population in the first set;
* ``crossings``: the replicate with the median share at that level runs ``--steps`` more kernel steps of every
  chain at that level's threshold and step (the run's own kernel, a stream of its own), and the chains labelled
  in both sets at some step are counted, with the evaluations those steps took (``crossings_per_1e4``);
* ``evaluations``: what a replicate spent growing the level's population (mean over replicates).

    python benchmarks/subset_modes.py --depth 9 --seeds 1,6,23,28,29,32,36,37,43,50,53,55 \
        --controls 0,2,3,4,5,7,16,17 --out benchmarks/results/subset_modes.json
    python benchmarks/subset_modes.py --depth 9 --seeds 6,28,36,43,50,53,55 --controls 4,0 --levels \
        --steps 200 --out benchmarks/results/subset_modes_levels.json

A chain counts once in ``crossed`` however often it crosses, and the two sets' cosine bands are closer together
when the centres are (control seed 0: cosines 0.95 and 0.84), so compare crossing rates between runs whose
centres are about as far apart.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans

from volumelab.models import FactorizationModel
from volumelab.optimizers import GuessCheck
from volumelab.optimizers import subset
from volumelab.problems.core import make_sensing
from volumelab._rng import make_generator

BUDGET = 200_000
EPS = 0.0035
#: The sampler's own growth, for the crossings' extra steps (never the capturing wrapper).
ORIGINAL_GROW = subset._Sampler.grow


@contextlib.contextmanager
def final_chains(store: dict):
    """Keep the last states of the chains at eps (the budgeted growth) and the sampler's prior, per replicate;
    and every level's population of the replicates (not the pilot's) with its threshold, step and sampler."""
    original = subset._Sampler.grow

    def grow(self, seeds, threshold, generators, targets=None, budgets=None, **settings):
        out = original(self, seeds, threshold, generators, targets=targets, budgets=budgets, **settings)
        if budgets is not None:
            # Replicates step in groups (one call each): keep every group's, in the order the calls end.
            store.setdefault("latents", []).extend(run[0] for run in out[0])
            store["prior"] = self.prior
        elif not settings.get("adapt"):  # a replicates' level (the pilot's growths adapt their step)
            level = store.setdefault("levels", {}).setdefault(threshold, {"step": settings.get("step"),
                                                                          "sampler": self, "runs": []})
            level["runs"].extend((run[0], run[1], run[2]) for run in out[0])
        return out

    subset._Sampler.grow = grow
    try:
        yield store
    finally:
        subset._Sampler.grow = original


def rhat_states(groups: list[np.ndarray]) -> float | None:
    groups = [group for group in groups if group.size >= 10]
    if len(groups) < 2:
        return None
    within = float(np.mean([group.var(ddof=1) for group in groups]))
    between = float(np.var([group.mean() for group in groups], ddof=1))
    return math.sqrt(1 + between / within) if within > 0 else None


def one_run(depth: int, seed: int, levels: bool = False, steps: int = 100) -> dict:
    problem = make_sensing(5, 5, 1, 15, seed=seed, norm=1.0)
    model = FactorizationModel(5, 5, 5, depth, activation="leaky_relu", prior="gaussian", scaling="paper",
                               normalize=True, negative_slope=0.2)
    with final_chains({}) as store:
        # One worker: the groups' calls end in replicate order (the numbers do not depend on the workers).
        result = GuessCheck(eps=EPS, method="subset", kernel="pcn-readout", workers=1).run(problem, model, BUDGET,
                                                                                            seed=seed)
    if "latents" not in store:
        return {"seed": seed, "status": result.status}
    owners = np.concatenate([np.full(latent.shape[0], r) for r, latent in enumerate(store["latents"])])
    with torch.no_grad():
        matrices = store["prior"].draws(torch.cat(store["latents"]))
        _, gen = problem.losses(matrices)
    flat = matrices.reshape(matrices.shape[0], -1)
    units = (flat / flat.norm(dim=1, keepdim=True)).numpy()
    gen = gen.numpy()
    target = np.asarray(problem.W_star, dtype=np.float64).ravel()
    target = target / np.linalg.norm(target)
    kmeans = KMeans(n_clusters=2, n_init=10, random_state=0).fit(units)
    centres, labels = kmeans.cluster_centers_, kmeans.labels_
    spread = float(np.mean(np.linalg.norm(units - centres[labels], axis=1)))
    cosines = [float(centre @ target / np.linalg.norm(centre)) for centre in centres]
    near = int(np.argmax(cosines))
    replicates = range(int(owners.max()) + 1)
    row = {
        "seed": seed, "status": result.status, "rhat": result.metrics.get("rhat"),
        "separation": float(np.linalg.norm(centres[0] - centres[1])) / spread,
        "cosines": [cosines[near], cosines[1 - near]],
        "states": [int((labels == near).sum()), int((labels != near).sum())],
        "gen_loss": [float(gen[labels == near].mean()), float(gen[labels != near].mean())],
        "shares": [float(np.mean(labels[owners == r] == near)) for r in replicates],
        "rhat_states": rhat_states([gen[owners == r] for r in replicates]),
        "rhat_states_within": [rhat_states([gen[(owners == r) & (labels == cluster)] for r in replicates])
                               for cluster in (near, 1 - near)],
    }
    if levels:
        row["levels"] = level_rows(store, target, cosines[near], cosines[1 - near], seed, steps)
    return row


def level_rows(store: dict, target: np.ndarray, first: float, second: float, seed: int, steps: int) -> list[dict]:
    """Per level of the ladder: each replicate's share of the first set, and the crossings of ``steps`` more
    kernel steps from the replicate with the median share (see the module docstring)."""
    middle, margin = (first + second) / 2, abs(first - second) / 4

    def labels(sampler, latent: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            flat = sampler.prior.draws(latent).reshape(latent.shape[0], -1).numpy()
        cosine = flat @ target / np.linalg.norm(flat, axis=1)
        return np.where(cosine > middle + margin, 1, np.where(cosine < middle - margin, 0, -1))

    rows = []
    for threshold, level in sorted(store["levels"].items(), key=lambda item: -item[0]):
        sampler, runs = level["sampler"], level["runs"]
        shares = [float(np.mean(labels(sampler, latent) == 1)) for latent, _, _ in runs]
        pick = int(np.argsort(shares)[len(shares) // 2])
        latent, scores, _ = runs[pick]
        chains = latent.shape[0]
        generator = make_generator(seed, "subset-modes-crossings", device=latent.device)
        (grown, _) = ORIGINAL_GROW(sampler, [(latent, scores)], threshold, [generator],
                                   targets=[chains * (steps + 1)], step=level["step"], thin=1)
        states, used = grown[0][0].reshape(steps + 1, chains, -1), grown[0][2]
        seen = np.stack([labels(sampler, state) for state in states])
        crossed = int(np.sum((seen == 1).any(0) & (seen == 0).any(0)))
        rows.append({"eps": threshold, "shares": shares, "evaluations": float(np.mean([run[2] for run in runs])),
                     "crossings": {"replicate": pick, "share": shares[pick], "chains": chains, "steps": steps,
                                   "crossed": crossed, "evaluations": used,
                                   "crossings_per_1e4": 1e4 * crossed / used}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=9)
    parser.add_argument("--seeds", required=True, help="comma-separated problem seeds (the flagged runs)")
    parser.add_argument("--controls", default="", help="comma-separated problem seeds of runs that passed")
    parser.add_argument("--levels", action="store_true", help="follow the two sets up the ladder (shares, crossings)")
    parser.add_argument("--steps", type=int, default=100, help="with --levels: kernel steps of the crossing count")
    parser.add_argument("--out")
    args = parser.parse_args()
    parse = lambda text: [int(item) for item in text.split(",") if item]  # noqa: E731
    record = {"benchmark": "subset_modes", "date": datetime.now(timezone.utc).isoformat(timespec="minutes"),
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "depth": args.depth,
              "budget": BUDGET, "eps": EPS, "levels": args.levels,
              "steps": args.steps if args.levels else None, "runs": []}
    for group, seeds in (("flagged", parse(args.seeds)), ("control", parse(args.controls))):
        for seed in seeds:
            row = {"group": group, **one_run(args.depth, seed, args.levels, args.steps)}
            record["runs"].append(row)
            print(json.dumps({key: (round(value, 3) if isinstance(value, float) else
                                    [round(v, 3) if isinstance(v, float) else v for v in value]
                                    if isinstance(value, list) else value) for key, value in row.items()
                              if key != "levels"}), flush=True)
            for level in row.get("levels", []):
                crossings = level["crossings"]
                print(f"  eps {level['eps']:.4g}: shares {' '.join(f'{v:.2f}' for v in level['shares'])}; "
                      f"{level['evaluations']:,.0f} evaluations a replicate; {crossings['crossed']} of "
                      f"{crossings['chains']} chains crossed in {crossings['steps']} steps "
                      f"({crossings['crossings_per_1e4']:.2f} per 10^4 evaluations)", flush=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
