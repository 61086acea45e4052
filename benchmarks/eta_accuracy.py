"""How true a sweep's time-left estimate is: the estimator of ``experiments.progress`` against the old one.

Runs each sweep from scratch at quick scale through ``run_sweep`` exactly as
``volumelab reproduce NAME --scale quick --out DIR`` does (in-process executor, one
worker, ``--device auto``), with a progress callback that records, at each finished
task, the elapsed seconds, the estimator's seconds left and the share it reports.
Afterwards, with the actual total ``T`` (the moment the last task finished):

* the predicted total at a task's completion is ``elapsed + seconds left``;
* its ratio to ``T`` is read at 25%, 50% and 75% of ``T`` (the estimate shown then:
  the one made at the last completion before that moment);
* the worst ratio after the first 10% of ``T`` (the one farthest from 1 in factors);
* the share of the time after the first 10% during which the estimate shown was within
  1.5x of the truth.

The old estimate (before issue 30, item 5: the share of the tasks' static ``cost``
done, extrapolated as ``elapsed / share``) is computed from the same run: the order
the tasks finished in is read back from the store (rows are written task by task, in
one transaction each) and the static costs from the plan. Both estimates therefore see
the same run on the same machine.

    python benchmarks/eta_accuracy.py                     # figure3 and theory-depth, about 10 min
    python benchmarks/eta_accuracy.py --section [JSON]    # the RESULTS.md section of a saved run

Writes ``benchmarks/results/eta_accuracy.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_benchmarks import RESULTS, machine  # noqa: E402

from volumelab.experiments import load_sweep, plan_sweep, run_sweep  # noqa: E402
from volumelab.experiments.paper import figure_config_path  # noqa: E402

SWEEPS = ("figure3", "theory-depth")
MOMENTS = (0.25, 0.5, 0.75)
#: The estimates after this share of the actual time count for the worst ratio.
SETTLED = 0.1
TARGET = 1.5
OUTPUT = RESULTS / "eta_accuracy.json"


def _factor(ratio: float) -> float:
    """How far a ratio is from 1, in factors (0.5 and 2 are both 2)."""
    return max(ratio, 1.0 / ratio) if ratio > 0 else float("inf")


def _completion_order(out: Path, tasks) -> list:
    """The plan's tasks in the order they finished, from the store's row ids."""
    by_key = {key: task for task in tasks for key in (*task.keys, *(k for keys in task.extra_keys for k in keys))}
    connection = sqlite3.connect(str(out / "results.sqlite"))
    try:
        keys = [key for (key,) in connection.execute("SELECT run_key FROM runs ORDER BY id")]
    finally:
        connection.close()
    order, seen = [], set()
    for key in keys:
        task = by_key[key]
        if id(task) not in seen:
            seen.add(id(task))
            order.append(task)
    return order


def _ratios(trace: list[dict], total: float, predicted: str) -> dict:
    """Predicted total / actual total at MOMENTS of ``total``, and the worst after SETTLED of it."""
    at = {}
    for moment in MOMENTS:
        shown = [point for point in trace if point["elapsed"] <= moment * total]
        at[f"{int(moment * 100)}%"] = shown[-1][predicted] / total if shown else None
    settled = [point for point in trace if point["elapsed"] >= SETTLED * total]
    worst = max(settled, key=lambda point: _factor(point[predicted] / total))
    return {"at": at, "worst_after_10%": worst[predicted] / total,
            "worst_at_elapsed_share": worst["elapsed"] / total}


def share_within(trace: list[dict], total: float, predicted: str, factor: float = TARGET) -> float:
    """The share of the time after SETTLED of ``total`` during which the estimate shown (each one until the next
    task finished) was within ``factor`` of the truth."""
    inside = 0.0
    for point, after in zip(trace, trace[1:]):
        start, end = max(point["elapsed"], SETTLED * total), after["elapsed"]
        if end > start and _factor(point[predicted] / total) <= factor:
            inside += end - start
    return inside / ((1 - SETTLED) * total)


def measure(name: str) -> dict:
    """Run sweep ``name`` at quick scale from scratch; both estimates at every finished task."""
    path = figure_config_path(name)
    config = load_sweep(path)
    trace: list[dict] = []

    def record(done, total, share, seconds, *, seconds_left):
        trace.append({"runs": done, "elapsed": seconds, "seconds_left": seconds_left, "share": share})

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix=f"eta-{name}-") as folder:
        out = Path(folder) / name
        started = time.perf_counter()
        outcome = run_sweep(path, scale="quick", out_dir=out, device="auto", progress=record)
        wall = time.perf_counter() - started
        plan = plan_sweep(config, "quick", device="auto")
        order = _completion_order(out, plan.tasks)
        connection = sqlite3.connect(str(out / "results.sqlite"))
        try:
            seconds = dict(connection.execute("SELECT run_key, seconds FROM runs"))
        finally:
            connection.close()
    load_after = os.getloadavg()
    if len(order) != len(trace):
        raise RuntimeError(f"{name}: {len(trace)} progress reports but {len(order)} tasks in the store")
    total_cost = sum(task.cost for task in plan.tasks)
    cost_done = 0.0
    for point, task in zip(trace, order):
        cost_done += task.cost
        point["method"] = task.method
        point["task_seconds"] = seconds[task.keys[0]] * len(task.seeds)
        point["old_share"] = cost_done / total_cost
        point["new_total"] = point["elapsed"] + point["seconds_left"]
        point["old_total"] = point["elapsed"] / point["old_share"]
    total = trace[-1]["elapsed"]
    methods = {}
    for point in trace:
        entry = methods.setdefault(point["method"], {"tasks": 0, "compute_seconds": 0.0, "first_done_at": None})
        entry["tasks"] += 1
        entry["compute_seconds"] += point["task_seconds"]
        if entry["first_done_at"] is None:
            entry["first_done_at"] = point["elapsed"] / total
    return {
        "sweep": name, "scale": "quick", "tasks": len(trace), "runs": outcome.ran_rows,
        "actual_total_seconds": total, "run_sweep_seconds": wall,
        "load_average_before": load_before, "load_average_after": load_after,
        "methods": methods,
        "new": _ratios(trace, total, "new_total"), "old": _ratios(trace, total, "old_total"),
        "trace": trace,
    }


def _commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return commit + ("+changes" if dirty else "")


def _fmt(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def section(data: dict) -> str:
    """The RESULTS.md section of a saved run."""
    info = data["machine"]
    lines = [
        "## Time-left estimates against the truth (issue 30, item 5)", "",
        f"`python benchmarks/eta_accuracy.py` ({info['date']}, commit {data['commit'][:12]}, {info['cpu']}, "
        f"{info['logical_cpus']} logical CPUs, torch {info['torch']}; the machine was shared with other "
        "processes, load averages below). Each sweep ran from scratch at quick scale as `volumelab reproduce "
        "NAME --scale quick` runs it; the table gives predicted total / actual total for the estimate shown at "
        f"25/50/75% of the actual time, and the worst after the first 10%. Target: within {TARGET}x "
        "(0.67 to 1.5). Old: elapsed / share of the static task cost done (the estimate before this change), "
        "computed from the same run. Raw trace: `results/eta_accuracy.json`.", "",
        "| sweep | actual | estimate | 25% | 50% | 75% | worst after 10% (at) | within 1.5x at 25/50/75% | "
        "time within 1.5x after 10% |",
        "|---|---:|---|---:|---:|---:|---:|---|---:|"]
    for sweep in data["sweeps"]:
        for label in ("old", "new"):
            part = sweep[label]
            at = part["at"]
            held = all(value is not None and _factor(value) <= TARGET for value in at.values())
            lines.append(
                f"| {sweep['sweep']} | {sweep['actual_total_seconds']:.0f} s | {label} | "
                + " | ".join(_fmt(value) for value in at.values())
                + f" | {_fmt(part['worst_after_10%'])} ({100 * part['worst_at_elapsed_share']:.0f}%) | "
                f"{'yes' if held else 'no'} | "
                f"{100 * share_within(sweep['trace'], sweep['actual_total_seconds'], label + '_total'):.0f}% |")
    lines.append("")
    for sweep in data["sweeps"]:
        methods = ", ".join(f"{method}: {entry['tasks']} tasks, {entry['compute_seconds']:.0f} compute s, first "
                            f"finished at {100 * entry['first_done_at']:.0f}% of the time"
                            for method, entry in sweep["methods"].items())
        lines.append(f"- {sweep['sweep']}: {methods}; load average {sweep['load_average_before'][0]:.1f} before, "
                     f"{sweep['load_average_after'][0]:.1f} after.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweeps", nargs="+", default=list(SWEEPS))
    parser.add_argument("--section", nargs="?", const=OUTPUT, type=Path, metavar="JSON",
                        help="print the RESULTS.md section of a saved run (default: the last one)")
    args = parser.parse_args()
    if args.section:
        print(section(json.loads(args.section.read_text())), end="")
        return
    data = {"machine": machine(), "commit": _commit(), "cpu_count": os.cpu_count(),
            "note": "shared machine: other processes (tests of other worktrees) ran on the same cores",
            "sweeps": []}
    for name in args.sweeps:
        result = measure(name)
        data["sweeps"].append(result)
        print(f"{name}: {result['actual_total_seconds']:.0f} s; new {result['new']['at']} worst "
              f"{result['new']['worst_after_10%']:.2f}; old {result['old']['at']} worst "
              f"{result['old']['worst_after_10%']:.2f}", flush=True)
    OUTPUT.write_text(json.dumps(data, indent=1) + "\n")
    print(section(data), end="")


if __name__ == "__main__":
    main()
