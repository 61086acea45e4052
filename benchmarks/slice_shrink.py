"""Wall time of the two slice moves on Figure 2's leaky-ReLU depth-10 setting, for a before/after comparison.

Subset G&C (5x5 rank-1 sensing, 15 measurements, width 5, depth 10, normalized Gaussian prior, 2x10^5 evaluations,
seed 0, one thread) with ``--kernel pcn-readout`` at eps 0.0035 and ``--kernel slice`` at eps 0.02, three timed runs
each; prints ``log_volume`` (fixed-seed: must not change) and the median wall time. Run it on two commits one after
the other (e.g. with ``git stash``) to compare them.

    python benchmarks/slice_shrink.py
"""

from __future__ import annotations

import statistics
import time

import torch

from volumelab.models import FactorizationModel
from volumelab.optimizers import GuessCheck
from volumelab.problems.core import make_sensing


def main() -> None:
    torch.set_num_threads(1)
    problem = make_sensing(5, 5, 1, 15, seed=0)
    model = FactorizationModel(5, 5, 5, 10, activation="leaky_relu", normalize=True, negative_slope=0.2)
    for kernel, eps in (("pcn-readout", 0.0035), ("slice", 0.02)):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            result = GuessCheck(eps=eps, method="subset", kernel=kernel).run(problem, model, 200_000, seed=0)
            times.append(time.perf_counter() - start)
        print(f"{kernel:12s} log_volume {result.metrics['log_volume']!r}  seconds {[round(t, 2) for t in times]}  "
              f"median {statistics.median(times):.2f}")


if __name__ == "__main__":
    main()
