"""G&C before and after a change, in one run: throughput and results on fixed instances.

Checks out ``--before`` (a commit) into a temporary folder and measures it next to the
working tree, alternating the two in separate processes so both see the same machine
state. For each configuration it reports the median draws/s of each side, their ratio,
and whether a fixed-seed run gives the same numbers (accepted count, G&C and prior
generalization loss) on both.

    python benchmarks/compare_commits.py --before HEAD~3 --out benchmarks/results/compare/NAME.json

A configuration whose sampler changed on purpose (e.g. a fix that alters the draws)
is expected to differ in its numbers; its throughput still has to hold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: (name, model keyword arguments, eps, draws for timing)
CONFIGURATIONS = [
    ("linear d2 k5", dict(width=5, depth=2, activation="linear"), 0.02, 1 << 23),
    ("linear d2 k160", dict(width=160, depth=2, activation="linear"), 0.02, 1 << 23),
    ("linear d2 k10000", dict(width=10_000, depth=2, activation="linear"), 0.02, 1 << 23),
    ("tanh d2 k160 (gram)", dict(width=160, depth=2, activation="tanh"), 0.02, 1 << 21),
    ("leaky_relu d2 k160 (gram)", dict(width=160, depth=2, activation="leaky_relu"), 0.02, 1 << 21),
    ("relu d2 k160 (gram)", dict(width=160, depth=2, activation="relu"), 0.02, 1 << 21),
    ("relu d2 k6 (gram, singular Grams)", dict(width=6, depth=2, activation="relu"), 0.05, 1 << 21),
    ("tanh d10 k5 normalized (layerwise)", dict(width=5, depth=10, activation="tanh", normalize=True), 0.01, 1 << 21),
]

_WORKER = r"""
import json, sys, time
import volumelab as vl
name, kwargs, eps, draws, seed = json.loads(sys.argv[1])
problem = vl.make_sensing(5, 5, 1, 15, seed=0)
model = vl.FactorizationModel(5, 5, **kwargs)
optimizer = vl.GuessCheck(eps=eps)
# Warm-up with a loose eps, so that every code path (including the end-of-run statistics and
# their lazy imports) has run once before the timed run.
vl.GuessCheck(eps=1e6).run(problem, model, 1 << 16, seed=seed)
start = time.perf_counter()
result = optimizer.run(problem, model, draws, seed=seed)
seconds = time.perf_counter() - start
m = result.metrics
print(json.dumps({"rate": draws / seconds, "sampler": result.diagnostics.get("sampler"),
                  "accepted": m["accepted"], "gen_loss": m["gen_loss"], "prior_gen_loss": m["prior_gen_loss"]}))
"""


def _measure(src: Path, configuration, seed: int) -> dict:
    name, kwargs, eps, draws = configuration
    environment = dict(os.environ, PYTHONPATH=str(src))
    output = subprocess.run([sys.executable, "-c", _WORKER, json.dumps([name, kwargs, eps, draws, seed])],
                            env=environment, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="commit to compare the working tree with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "compare" / "compare_commits.json")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", args.before], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(["git", "worktree", "add", "--detach", folder, commit], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            sides = {"before": Path(folder) / "src", "after": ROOT / "src"}
            rows = []
            for configuration in CONFIGURATIONS:
                runs = {side: [] for side in sides}
                for _ in range(args.repeats):
                    for side, src in sides.items():  # alternate, so both see the same machine state
                        runs[side].append(_measure(src, configuration, seed=1))
                row = {"configuration": configuration[0], "draws": configuration[3]}
                for side in sides:
                    rates = [r["rate"] for r in runs[side]]
                    last = runs[side][-1]
                    row[side] = {"median_draws_per_s": statistics.median(rates), "rates": rates,
                                 **{k: last[k] for k in ("sampler", "accepted", "gen_loss", "prior_gen_loss")}}
                row["ratio_after_over_before"] = (row["after"]["median_draws_per_s"]
                                                  / row["before"]["median_draws_per_s"])
                row["same_numbers"] = all(row["before"][k] == row["after"][k]
                                          for k in ("accepted", "gen_loss", "prior_gen_loss"))
                rows.append(row)
                print(f"{row['configuration']:38s} before {row['before']['median_draws_per_s'] / 1e6:6.2f}M/s  "
                      f"after {row['after']['median_draws_per_s'] / 1e6:6.2f}M/s  "
                      f"ratio {row['ratio_after_over_before']:.3f}  same numbers: {row['same_numbers']}",
                      flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", folder], cwd=ROOT, check=False,
                           capture_output=True)
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"before": commit, "machine": {"cpu": cpu, "cores": os.cpu_count(),
                                                                  "python": platform.python_version()},
                                    "repeats": args.repeats, "rows": rows}, indent=1), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
