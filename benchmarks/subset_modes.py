"""Why a depth figure's G&C run ends ``not_mixed``: replicates split between separated sets of interpolators.

Diagnostic for issue 33's fourth "Done when" (the leaky-ReLU panels of Figures 2 and 4). Setting: Figure 2's
quick scale (``benchmarks/subset_mixing.py``'s: rank-1 5 x 5 sensing, 15 measurements, width 5, the normalized
Gaussian prior, eps 0.0035, ``kernel="pcn-readout"``, 2x10^5 evaluations; run seed = problem seed).

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

    python benchmarks/subset_modes.py --depth 9 --seeds 1,6,23,28,29 --controls 0,2,3 \
        --out benchmarks/results/subset_modes.json
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

BUDGET = 200_000
EPS = 0.0035


@contextlib.contextmanager
def final_chains(store: dict):
    """Keep the last states of the chains at eps (the budgeted growth) and the sampler's prior, per replicate."""
    original = subset._Sampler.grow

    def grow(self, seeds, threshold, generators, targets=None, budgets=None, **settings):
        out = original(self, seeds, threshold, generators, targets=targets, budgets=budgets, **settings)
        if budgets is not None:
            # Replicates step in groups (one call each): keep every group's, in the order the calls end.
            store.setdefault("latents", []).extend(run[0] for run in out[0])
            store["prior"] = self.prior
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


def one_run(depth: int, seed: int) -> dict:
    problem = make_sensing(5, 5, 1, 15, seed=seed, norm=1.0)
    model = FactorizationModel(5, 5, 5, depth, activation="leaky_relu", prior="gaussian", scaling="paper",
                               normalize=True, negative_slope=0.2)
    with final_chains({}) as store:
        result = GuessCheck(eps=EPS, method="subset", kernel="pcn-readout").run(problem, model, BUDGET, seed=seed)
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
    return {
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=9)
    parser.add_argument("--seeds", required=True, help="comma-separated problem seeds (the flagged runs)")
    parser.add_argument("--controls", default="", help="comma-separated problem seeds of runs that passed")
    parser.add_argument("--out")
    args = parser.parse_args()
    parse = lambda text: [int(item) for item in text.split(",") if item]  # noqa: E731
    record = {"benchmark": "subset_modes", "date": datetime.now(timezone.utc).isoformat(timespec="minutes"),
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "depth": args.depth,
              "budget": BUDGET, "eps": EPS, "runs": []}
    for group, seeds in (("flagged", parse(args.seeds)), ("control", parse(args.controls))):
        for seed in seeds:
            row = {"group": group, **one_run(args.depth, seed)}
            record["runs"].append(row)
            print(json.dumps({key: (round(value, 3) if isinstance(value, float) else
                                    [round(v, 3) if isinstance(v, float) else v for v in value]
                                    if isinstance(value, list) else value) for key, value in row.items()}),
                  flush=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
