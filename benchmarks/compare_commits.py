"""G&C and GD before and after a change, in one run: throughput and results on fixed instances.

Checks out ``--before`` (a commit) into a temporary folder and measures it next to the
working tree, alternating the two in separate processes so both see the same machine
state. Each configuration gives one row of the output JSON, with ``kind`` saying which:

* ``"gnc"`` (unit ``draws/s``): one :class:`volumelab.GuessCheck` run per process, after a
  loose-eps warm-up. Fixed-seed numbers compared: accepted count, G&C and prior
  generalization loss.
* ``"subset"`` (unit ``evaluations/s``): one ``GuessCheck(method="subset")`` run with its
  defaults per process, after a warm-up at a loose eps. Fixed-seed numbers compared:
  ``log_volume`` and ``gen_loss``.
* ``"gd"`` (unit ``steps/s``; one step advances all 8 runs of the batch; the supervised rows
  train an MLP on one data split per seed, lr 1e-2, init scale 1, with their own step counts):
  :meth:`volumelab.GradientDescent.run_batch` at the paper's GD settings (``group_rmsprop``,
  lr 1e-3, init scale 1e-3, one sensing problem per seed, seeds 0-7) on one torch thread.
  Each process warms up with a 200-step batch, then times ``GD_BLOCKS`` batches of
  ``GD_STEPS`` steps and reports their median (a single-process median is much less noisy
  on a small shared machine than one long timing). Fixed-seed numbers compared: the final
  ``gen_loss`` of each of the 8 runs.

* ``"store"`` (unit ``scans/s``): a results store of ``rows`` synthetic runs (each with a ``:prior`` row and
  realistic JSON columns) built once per process by that side's code, then ``STORE_SCANS`` verified reads
  (:meth:`~volumelab.experiments.ResultsStore.damaged_rows`, the scan every read of the store makes) timed
  one by one; the process reports their median. Compared: the count of intact keys and of damaged rows.

For each row it reports the median rate of each side (over ``--repeats`` processes), all
the rates, their ratio after/before, and whether the fixed-seed numbers are the same on both.

    python benchmarks/compare_commits.py --before HEAD~3 --out benchmarks/results/compare/NAME.json
    python benchmarks/compare_commits.py --before HEAD~3 --only gd --repeats 3
    python benchmarks/compare_commits.py --before HEAD~1 --only subset
    python benchmarks/compare_commits.py --before HEAD~1 --only store

A configuration whose sampler or step changed on purpose (e.g. a fix that alters the
draws) is expected to differ in its numbers; its throughput still has to hold.
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

#: G&C: (name, model keyword arguments, eps, draws for timing)
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

#: Subset-simulation G&C (``method="subset"``, its defaults): (name, model keyword arguments, eps, evaluations).
#: The width-sweep setting at eps 1e-3 (widths 5 and 160, unnormalized) and the paper's depth setting.
SUBSET_CONFIGURATIONS = [
    ("subset linear d2 k5 eps 1e-3", dict(width=5, depth=2, activation="linear"), 1e-3, 300_000),
    ("subset linear d2 k160 eps 1e-3", dict(width=160, depth=2, activation="linear"), 1e-3, 300_000),
    ("subset linear d6 k5 normalized eps 0.0035", dict(width=5, depth=6, activation="linear", normalize=True),
     0.0035, 150_000),
]

#: GD: (name, model keyword arguments, momentum)
GD_CONFIGURATIONS = [
    ("GD rmsprop d2 k5", dict(width=5, depth=2, activation="linear"), 0.0),
    ("GD rmsprop d2 k40", dict(width=40, depth=2, activation="linear"), 0.0),
    ("GD rmsprop d2 k160", dict(width=160, depth=2, activation="linear"), 0.0),
    ("GD rmsprop+momentum d2 k5 tanh", dict(width=5, depth=2, activation="tanh"), 0.9),
    ("GD rmsprop d10 k5 tanh", dict(width=5, depth=10, activation="tanh"), 0.0),
]
#: GD on supervised data (autograd path): an MLP on digits, and a fully connected deep linear
#: classifier on the sparse teacher (20 training points, 10,000 test points); and NGD
#: (``ngd=True``: lr 0.1, damping 1e-4, auto solve) on a factorization and an MLP. ``steps``
#: and ``blocks`` are per configuration (a step here costs far more than a factorization's GD step).
GD_SUPERVISED_CONFIGURATIONS = [
    ("GD mlp d2 k32 tanh digits n40", dict(data="digits", train=40, width=32, depth=2, activation="tanh",
                                           steps=200, blocks=3), 0.0),
    ("GD linear d2 k50 sparse_teacher n20", dict(data="sparse_teacher", train=20, width=50, depth=2,
                                                 activation="linear", steps=20, blocks=3), 0.0),
    ("NGD d2 k5 (dual)", dict(width=5, depth=2, activation="linear", ngd=True, steps=200, blocks=3), 0.0),
    ("NGD mlp d2 k16 tanh digits n40 (dual)", dict(data="digits", train=40, width=16, depth=2, activation="tanh",
                                                   ngd=True, steps=20, blocks=3), 0.0),
]
#: Results store: (name, runs stored; each has a ``:prior`` row too, so twice as many rows)
STORE_CONFIGURATIONS = [("store scan 2 x 10000 rows", 10_000)]
STORE_SCANS = 5  # timed scans per process; the process reports their median
GD_SEEDS = 8  # one problem per seed, seeds range(GD_SEEDS)
GD_WARMUP_STEPS = 200
GD_STEPS = 1000  # steps per timed block
GD_BLOCKS = 5  # timed blocks per process; the process reports their median

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

_SUBSET_WORKER = r"""
import json, sys, time
import volumelab as vl
name, kwargs, eps, evaluations, seed = json.loads(sys.argv[1])
problem = vl.make_sensing(5, 5, 1, 15, seed=0)
model = vl.FactorizationModel(5, 5, **kwargs)
vl.GuessCheck(eps=0.05, method="subset").run(problem, model, 20_000, seed=seed)  # warm-up: every code path once
start = time.perf_counter()
result = vl.GuessCheck(eps=eps, method="subset").run(problem, model, evaluations, seed=seed)
seconds = time.perf_counter() - start
m = result.metrics
print(json.dumps({"rate": m["evaluations"] / seconds, "status": result.status, "log_volume": m["log_volume"],
                  "gen_loss": m["gen_loss"], "rhat": m["rhat"]}))
"""

_GD_WORKER = r"""
import json, statistics, sys, time
import torch
import volumelab as vl
name, kwargs, momentum, runs, warmup, steps, blocks = json.loads(sys.argv[1])
torch.set_num_threads(1)
seeds = list(range(runs))
if "data" in kwargs:  # supervised: one split per seed, the MLP family
    from volumelab.models import MLPModel
    from volumelab.problems import make_supervised
    problems = [make_supervised(kwargs["data"], kwargs["train"], seed=s, num_features=50) for s in seeds]
    model = MLPModel(problems[0].num_features, kwargs["width"], kwargs["depth"], kwargs["activation"])
    gd = vl.GradientDescent(lr=1e-2, init_scale=1.0, step_rule="group_rmsprop", momentum=momentum)
else:
    problems = [vl.make_sensing(5, 5, 1, 15, seed=s) for s in seeds]
    model = vl.FactorizationModel(5, 5, kwargs["width"], kwargs["depth"], kwargs["activation"])
    gd = vl.GradientDescent(lr=1e-3, init_scale=1e-3, step_rule="group_rmsprop", momentum=momentum)
if kwargs.get("ngd"):
    gd = vl.NaturalGradientDescent(lr=0.1, init_scale=0.3 if "data" not in kwargs else 1.0, damping=1e-4)
if "steps" in kwargs:
    steps, blocks, warmup = kwargs["steps"], kwargs["blocks"], kwargs["steps"]
gd.run_batch(problems, model, warmup, seeds=seeds)  # warm-up: every code path runs once
rates, losses = [], []
for _ in range(blocks):
    start = time.perf_counter()
    results = gd.run_batch(problems, model, steps, seeds=seeds)
    seconds = time.perf_counter() - start
    rates.append(steps / seconds)
    losses.append([r.metrics["gen_loss"] for r in results])
print(json.dumps({"rate": statistics.median(rates), "block_rates": rates, "gen_loss": losses[-1],
                  "deterministic": all(loss == losses[-1] for loss in losses)}))
"""


_STORE_WORKER = r"""
import json, statistics, sys, tempfile, time
from volumelab.experiments import ResultsStore
from volumelab.experiments.store import ResultRow
name, runs, scans = json.loads(sys.argv[1])
metrics = {f"metric_{i}": 0.1 * i for i in range(30)}
def row(key, method, point):
    return ResultRow(run_key=key, sweep="s", scale="quick", method=method, method_type=method, point=point,
                     x=point, coords={"model.width": point}, seed=point % 8, status="ok", metrics=metrics,
                     standard_errors=metrics, diagnostics={"levels": [metrics] * 4}, config={"a": 1},
                     seconds=0.1, started_at="t0", finished_at="t1", volumelab_version="v", torch_version="t")
with tempfile.TemporaryDirectory() as folder:
    with ResultsStore(folder) as store:
        for start in range(0, runs, 1000):
            store.add([r for i in range(start, min(runs, start + 1000))
                       for r in (row(f"{i:032x}", "gnc", i), row(f"{i:032x}:prior", "prior", i))])
    with ResultsStore(folder, create=False) as store:
        store.damaged_rows()  # warm-up
        times, damaged = [], None
        for _ in range(scans):
            start = time.perf_counter()
            damaged = store.damaged_rows()
            times.append(time.perf_counter() - start)
        intact = len(store.existing_keys())
print(json.dumps({"rate": 1 / statistics.median(times), "times": times, "intact": intact, "damaged": len(damaged)}))
"""


def _run_worker(src: Path, code: str, arguments: list) -> dict:
    environment = dict(os.environ, PYTHONPATH=str(src))
    output = subprocess.run([sys.executable, "-c", code, json.dumps(arguments)],
                            env=environment, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _measure(src: Path, configuration, seed: int) -> dict:
    name, kwargs, eps, draws = configuration
    return _run_worker(src, _WORKER, [name, kwargs, eps, draws, seed])


def _measure_gd(src: Path, configuration) -> dict:
    name, kwargs, momentum = configuration
    return _run_worker(src, _GD_WORKER, [name, kwargs, momentum, GD_SEEDS, GD_WARMUP_STEPS, GD_STEPS, GD_BLOCKS])


def _alternate(sides: dict, repeats: int, measure) -> dict:
    runs = {side: [] for side in sides}
    for _ in range(repeats):
        for side, src in sides.items():  # alternate, so both see the same machine state
            runs[side].append(measure(src))
    return runs


def _gnc_row(sides: dict, configuration, repeats: int) -> dict:
    runs = _alternate(sides, repeats, lambda src: _measure(src, configuration, seed=1))
    row = {"kind": "gnc", "unit": "draws/s", "configuration": configuration[0], "draws": configuration[3]}
    for side in sides:
        rates = [r["rate"] for r in runs[side]]
        last = runs[side][-1]
        row[side] = {"median_draws_per_s": statistics.median(rates), "rates": rates,
                     **{k: last[k] for k in ("sampler", "accepted", "gen_loss", "prior_gen_loss")}}
    row["ratio_after_over_before"] = (row["after"]["median_draws_per_s"]
                                      / row["before"]["median_draws_per_s"])
    row["same_numbers"] = all(row["before"][k] == row["after"][k]
                              for k in ("accepted", "gen_loss", "prior_gen_loss"))
    print(f"{row['configuration']:38s} before {row['before']['median_draws_per_s'] / 1e6:6.2f}M/s  "
          f"after {row['after']['median_draws_per_s'] / 1e6:6.2f}M/s  "
          f"ratio {row['ratio_after_over_before']:.3f}  same numbers: {row['same_numbers']}",
          flush=True)
    return row


def _subset_row(sides: dict, configuration, repeats: int) -> dict:
    name, kwargs, eps, evaluations = configuration
    runs = _alternate(sides, repeats, lambda src: _run_worker(src, _SUBSET_WORKER, [name, kwargs, eps, evaluations, 1]))
    row = {"kind": "subset", "unit": "evaluations/s", "configuration": name, "evaluations": evaluations}
    for side in sides:
        rates = [r["rate"] for r in runs[side]]
        last = runs[side][-1]
        row[side] = {"median_evaluations_per_s": statistics.median(rates), "rates": rates,
                     **{k: last[k] for k in ("status", "log_volume", "gen_loss", "rhat")}}
    row["ratio_after_over_before"] = (row["after"]["median_evaluations_per_s"]
                                      / row["before"]["median_evaluations_per_s"])
    row["same_numbers"] = all(row["before"][k] == row["after"][k] for k in ("log_volume", "gen_loss"))
    print(f"{name:44s} before {row['before']['median_evaluations_per_s'] / 1e3:7.1f}k/s  "
          f"after {row['after']['median_evaluations_per_s'] / 1e3:7.1f}k/s  "
          f"ratio {row['ratio_after_over_before']:.3f}  same numbers: {row['same_numbers']}  "
          f"(log P {row['before']['log_volume']:.2f} / {row['after']['log_volume']:.2f}, gen "
          f"{row['before']['gen_loss']:.4f} / {row['after']['gen_loss']:.4f})", flush=True)
    return row


def _store_row(sides: dict, configuration, repeats: int) -> dict:
    name, runs = configuration
    measured = _alternate(sides, repeats, lambda src: _run_worker(src, _STORE_WORKER, [name, runs, STORE_SCANS]))
    row = {"kind": "store", "unit": "scans/s", "configuration": name, "rows": 2 * runs}
    for side in sides:
        rates = [r["rate"] for r in measured[side]]
        last = measured[side][-1]
        row[side] = {"median_scans_per_s": statistics.median(rates), "rates": rates,
                     "intact": last["intact"], "damaged": last["damaged"]}
    row["ratio_after_over_before"] = row["after"]["median_scans_per_s"] / row["before"]["median_scans_per_s"]
    row["same_numbers"] = all(row["before"][k] == row["after"][k] for k in ("intact", "damaged"))
    print(f"{name:38s} before {1 / row['before']['median_scans_per_s']:6.3f} s/scan  "
          f"after {1 / row['after']['median_scans_per_s']:6.3f} s/scan  "
          f"ratio {row['ratio_after_over_before']:.3f}  same numbers: {row['same_numbers']}", flush=True)
    return row


def _gd_row(sides: dict, configuration, repeats: int) -> dict:
    name, kwargs, momentum = configuration
    runs = _alternate(sides, repeats, lambda src: _measure_gd(src, configuration))
    row = {"kind": "gd", "unit": "steps/s", "configuration": name, "model": kwargs, "momentum": momentum,
           "runs_per_batch": GD_SEEDS, "steps": kwargs.get("steps", GD_STEPS), "blocks": kwargs.get("blocks", GD_BLOCKS)}
    for side in sides:
        rates = [r["rate"] for r in runs[side]]  # one per process: the median of its blocks
        last = runs[side][-1]
        row[side] = {"median_steps_per_s": statistics.median(rates), "rates": rates,
                     "block_rates": [r["block_rates"] for r in runs[side]],
                     "gen_loss": last["gen_loss"],
                     "deterministic": all(r["deterministic"] and r["gen_loss"] == last["gen_loss"]
                                          for r in runs[side])}
    row["ratio_after_over_before"] = (row["after"]["median_steps_per_s"]
                                      / row["before"]["median_steps_per_s"])
    row["same_numbers"] = row["before"]["gen_loss"] == row["after"]["gen_loss"]
    print(f"{name:38s} before {row['before']['median_steps_per_s']:8.0f}/s  "
          f"after {row['after']['median_steps_per_s']:8.0f}/s  "
          f"ratio {row['ratio_after_over_before']:.3f}  same numbers: {row['same_numbers']}",
          flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="commit to compare the working tree with")
    parser.add_argument("--repeats", type=int, default=3, help="processes per side and configuration")
    parser.add_argument("--only", choices=("gnc", "subset", "gd", "gd-supervised", "store", "all"), default="all",
                        help="which configurations to measure (default: all; gnc: rejection G&C, subset: "
                             "subset-simulation G&C, gd: the factorization's GD rows, gd-supervised: GD on "
                             "supervised data and NGD, store: a verified read of a results store)")
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
            if args.only in ("gnc", "all"):
                for configuration in CONFIGURATIONS:
                    rows.append(_gnc_row(sides, configuration, args.repeats))
            if args.only in ("subset", "all"):
                for configuration in SUBSET_CONFIGURATIONS:
                    rows.append(_subset_row(sides, configuration, args.repeats))
            if args.only in ("gd", "all"):
                for configuration in GD_CONFIGURATIONS:
                    rows.append(_gd_row(sides, configuration, args.repeats))
            if args.only in ("gd-supervised", "all"):
                for configuration in GD_SUPERVISED_CONFIGURATIONS:
                    rows.append(_gd_row(sides, configuration, args.repeats))
            if args.only in ("store", "all"):
                for configuration in STORE_CONFIGURATIONS:
                    rows.append(_store_row(sides, configuration, args.repeats))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", folder], cwd=ROOT, check=False,
                           capture_output=True)
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"before": commit, "machine": {"cpu": cpu, "cores": os.cpu_count(),
                                                                  "python": platform.python_version()},
                                    "repeats": args.repeats, "only": args.only, "rows": rows}, indent=1),
                        encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
