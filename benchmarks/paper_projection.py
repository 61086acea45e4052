"""Paper-scale time of a figure's G&C arm on this machine, measured on a slice of it.

Runs the figure's G&C method through the sweep driver (``volumelab run``'s code path:
store, executor, progress) on every grid point with fewer seeds and draws, then scales
each point's measured time to the paper's budget (a G&C run's cost is linear in its
draws). The random-number bound of the same work is computed from the normals each
point's sampler must draw (``random_numbers_per_sample``) at the normal-generation rate
measured in this run, before and after the slice (their mean).

    python benchmarks/paper_projection.py                       # figure 1, 1 seed x 10^7 draws
    python benchmarks/paper_projection.py --gd                  # also GD at paper settings
    python benchmarks/run_benchmarks.py --report                # adds the table to RESULTS.md

Writes ``benchmarks/results/paper_<figure>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_benchmarks import RESULTS, bench_rng, machine  # noqa: E402

import volumelab as vl  # noqa: E402
from volumelab.experiments import run_sweep  # noqa: E402
from volumelab.experiments.config import sweep_from_dict  # noqa: E402
from volumelab.experiments.paper import figure_config_path  # noqa: E402
from volumelab.samplers.base import _REGISTRY as SAMPLERS  # noqa: E402


def _slice_config(figure: str, seeds: int, samples: int, method: str) -> tuple[dict, dict]:
    data = yaml.safe_load(figure_config_path(figure).read_text(encoding="utf-8"))
    paper = {"seeds": data["seeds"] if isinstance(data["seeds"], int) else len(data["seeds"]),
             "samples": data["methods"]["gnc"]["samples"]}
    data["name"] = f"{data['name']}_{method}_slice"
    data["methods"] = {method: data["methods"][method]}
    data.pop("scales", None)
    if method == "gnc":
        data["seeds"] = list(range(seeds))
        data["methods"]["gnc"]["samples"] = samples
    return data, paper


def project_gnc(figure: str, seeds: int, samples: int, out: Path) -> dict:
    data, paper = _slice_config(figure, seeds, samples, "gnc")
    config = sweep_from_dict(data, source=f"{figure} (slice)")
    before = bench_rng(False)["normal_float32_all_cores_per_s"]
    start = time.perf_counter()
    outcome = run_sweep(config, out_dir=out, progress=sys.stderr.isatty())
    wall = time.perf_counter() - start
    after = bench_rng(False)["normal_float32_all_cores_per_s"]
    normals = (before + after) / 2
    with sqlite3.connect(out / "results.sqlite") as db:
        runs = db.execute("SELECT point, seconds, metrics, diagnostics FROM runs WHERE method = 'gnc'").fetchall()
    scale = paper["seeds"] * paper["samples"] / (seeds * samples)  # slice -> paper budget
    points = []
    for resolved in outcome.plan.points:
        mine = [r for r in runs if r[0] == resolved.index]
        diagnostics = [json.loads(r[3]) for r in mine]
        sampler = diagnostics[0]["sampler"]
        model = vl.FactorizationModel(resolved.problem.rows, resolved.problem.cols, **resolved.model.model_dump())
        numbers = SAMPLERS[sampler].random_numbers_per_sample(model)
        seconds = sum(r[1] for r in mine)
        draws = float(sum(json.loads(r[2])["samples"] for r in mine))
        points.append({
            "activation": model.activation, "width": model.width, "depth": model.depth, "sampler": sampler,
            "slice_seconds": seconds, "slice_draws": draws, "draws_per_s": draws / seconds,
            "random_numbers_per_draw": numbers, "rng_bound_draws_per_s": normals / numbers,
            "paper_seconds": seconds * scale, "paper_bound_seconds": draws * scale * numbers / normals,
        })
    paper_seconds = sum(p["paper_seconds"] for p in points)
    bound_seconds = sum(p["paper_bound_seconds"] for p in points)
    return {
        "figure": figure, "slice_seeds": seeds, "slice_samples": samples, "paper": paper, "scale_factor": scale,
        "slice_wall_seconds": wall, "normals_per_s_before": before, "normals_per_s_after": after,
        "normals_per_s": normals, "points": points, "paper_seconds": paper_seconds,
        "paper_bound_seconds": bound_seconds, "ratio_to_bound": paper_seconds / bound_seconds,
        "paper_draws": sum(p["slice_draws"] for p in points) * scale,
    }


def measure_gd(figure: str, out: Path) -> dict:
    data, _ = _slice_config(figure, 0, 0, "gd")
    config = sweep_from_dict(data, source=f"{figure} (GD arm)")
    start = time.perf_counter()
    run_sweep(config, out_dir=out, progress=sys.stderr.isatty())
    wall = time.perf_counter() - start
    frame = vl.load_results(out)
    return {"wall_seconds": wall, "runs": len(frame), "statuses": sorted(set(frame["status"])),
            "steps": int(frame["steps"].max()), "task_seconds": float(frame["seconds"].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figure", default="figure1")
    parser.add_argument("--seeds", type=int, default=1, help="seeds of the slice (paper: the config's)")
    parser.add_argument("--samples", type=int, default=10**7, help="draws per (point, seed) in the slice")
    parser.add_argument("--gd", action="store_true", help="also run the GD arm at paper settings (all seeds)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        result = project_gnc(args.figure, args.seeds, args.samples, Path(tmp) / "gnc")
        print(f"{args.figure} G&C at paper scale: {result['paper_draws']:.3g} draws, projected "
              f"{result['paper_seconds'] / 3600:.2f} h; random-number bound {result['paper_bound_seconds'] / 3600:.2f} h "
              f"(ratio {result['ratio_to_bound']:.2f}); slice took {result['slice_wall_seconds']:.0f} s", flush=True)
        if args.gd:
            result["gd"] = measure_gd(args.figure, Path(tmp) / "gd")
            print(f"{args.figure} GD arm at paper settings: {result['gd']['wall_seconds']:.0f} s wall "
                  f"({result['gd']['runs']} runs, {result['gd']['steps']} steps)", flush=True)
    payload = {"machine": machine(), "quick": False, "results": result}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"paper_{args.figure}.json").write_text(json.dumps(payload, indent=1, default=str))
    print("median draws/s over points:", f"{statistics.median(p['draws_per_s'] for p in result['points']):,.0f}")


if __name__ == "__main__":
    main()
