"""NGD's batched path before and after a change: steps/s of the working tree against a commit, interleaved.

``ngd_solves.py`` times the batched path against the per-run loop of the same code; this
times the batched path of two versions of the code on the same rows (its configurations,
each row's solves and NGD settings, its seed counts). ``--before`` is checked out into a
temporary worktree; one long-lived worker process per side (``PYTHONPATH`` its ``src``)
runs ``NaturalGradientDescent(solve=...).run_batch`` on request, and the driver asks the
two alternately (before, after, after, before, ...), so a change in the machine's load
hits both. Each worker warms every row up once before the first timing. It reports the
median steps/s of each side, their ratio (and the median of the per-repeat ratios), and
the largest relative difference between the two sides' final parameters. A case that
either side cannot run (a setting the older code does not have) is left out of the timings
and listed with the side's error under ``not_run``.

    python benchmarks/ngd_before_after.py --before 4d6a20d --repeats 5 --out benchmarks/results/ngd/NAME.json
    python benchmarks/ngd_before_after.py --before 8dbbe9c --rows completion "population Fisher" --out ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

_WORKER = r"""
import json, sys, time
import torch
sys.path.insert(0, sys.argv[1])  # the working tree's benchmarks: ngd_solves' rows and settings
import ngd_solves as rows
import volumelab as vl
from volumelab.optimizers.observers import FinalOutputs
torch.set_num_threads(1)
configurations = rows.configurations()
for line in sys.stdin:
    index, solve, num_seeds = json.loads(line)
    row = configurations[index]
    try:
        ngd = vl.NaturalGradientDescent(**row.ngd_settings(solve))
        start = time.perf_counter()
        results = ngd.run_batch([row.problem], row.model, row.steps, list(range(num_seeds)),
                                observers=[FinalOutputs()])
        seconds = time.perf_counter() - start
    except Exception as error:  # this side's code cannot run the row's settings: the driver leaves the case out
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
        continue
    final = [rows.final_parameters(result, row.model).tolist() for result in results]
    print(json.dumps({"seconds": seconds, "final": final, "statuses": sorted({r.status for r in results})}),
          flush=True)
"""


class Worker:
    """One side's process: ``measure(index, solve, seeds)`` -> its timing and final parameters."""

    def __init__(self, src: Path):
        self.process = subprocess.Popen([sys.executable, "-c", _WORKER, str(HERE)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(src)))

    def measure(self, index: int, solve: str, num_seeds: int) -> dict:
        self.process.stdin.write(json.dumps([index, solve, num_seeds]) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("a worker process ended early (its error is above)")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def relative(a: list, b: list) -> float:
    import torch

    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return float((a - b).norm() / b.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="commit to compare the working tree with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ngd" / "ngd_before_after.json")
    parser.add_argument("--rows", nargs="*", help="time only the rows whose name contains one of these")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    import ngd_solves

    facts = ngd_solves.machine()
    commit = subprocess.run(["git", "rev-parse", args.before], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    configured = ngd_solves.configurations()
    cases = [(index, solve, num_seeds) for index in ngd_solves.select(configured, args.rows)
             for solve in configured[index].solves for num_seeds in ngd_solves.SEEDS]
    load_before = os.getloadavg()
    rows, not_run = [], []
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(["git", "worktree", "add", "--detach", folder, commit], cwd=ROOT, check=True,
                       capture_output=True)
        workers = {}
        try:
            workers = {"before": Worker(Path(folder) / "src"), "after": Worker(ROOT / "src")}
            runnable = []
            for case in cases:  # warm-up: every row once on each side
                errors = {side: worker.measure(*case).get("error") for side, worker in workers.items()}
                errors = {side: error for side, error in errors.items() if error}
                if errors:
                    index, solve, num_seeds = case
                    not_run.append({"configuration": configured[index].name, "solve": solve, "seeds": num_seeds,
                                    "errors": errors})
                    print(f"{configured[index].name:42s} {solve:5s} {num_seeds} seed(s): not run ({errors})",
                          flush=True)
                else:
                    runnable.append(case)
            for index, solve, num_seeds in runnable:
                seconds = {side: [] for side in workers}
                last = {}
                for repeat in range(args.repeats):
                    order = list(workers) if repeat % 2 == 0 else list(reversed(workers))
                    for side in order:
                        last[side] = workers[side].measure(index, solve, num_seeds)
                        seconds[side].append(last[side]["seconds"])
                row = configured[index]
                steps = row.steps
                rates = {side: steps / statistics.median(values) for side, values in seconds.items()}
                paired = statistics.median(b / a for b, a in zip(seconds["before"], seconds["after"]))
                difference = max(relative(a, b) for a, b in zip(last["after"]["final"], last["before"]["final"]))
                record = {"configuration": row.name, "settings": row.settings, "solve": solve, "seeds": num_seeds,
                          "steps": steps,
                          "before_steps_per_s": rates["before"], "after_steps_per_s": rates["after"],
                          "ratio": rates["after"] / rates["before"], "paired_ratio": paired, "seconds": seconds,
                          "max_relative_difference": difference,
                          "statuses": sorted(set(last["before"]["statuses"]) | set(last["after"]["statuses"]))}
                rows.append(record)
                print(f"{row.name:42s} {solve:5s} {num_seeds} seed(s): before {rates['before']:8.1f}/s  "
                      f"after {rates['after']:8.1f}/s  x{record['ratio']:.2f} (paired x{paired:.2f})  "
                      f"(final parameters differ by {difference:.1e})", flush=True)
        finally:
            for worker in workers.values():
                worker.close()
            subprocess.run(["git", "worktree", "remove", "--force", folder], cwd=ROOT, check=False,
                           capture_output=True)
    payload = {"machine": {**facts, "load_average_before": load_before, "load_average_after": os.getloadavg()},
               "before": commit, "repeats": args.repeats, "lr": ngd_solves.LR, "damping": ngd_solves.DAMPING,
               "init_scale": ngd_solves.INIT, "rows_selected": args.rows, "rows": rows, "not_run": not_run}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
