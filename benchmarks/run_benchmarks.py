"""Throughput benchmarks: G&C draws/s, GD steps/s, time to a target standard error.

Run from the repository root (each part stays under 10 minutes on 2 cores):

    python benchmarks/run_benchmarks.py --part rng
    python benchmarks/run_benchmarks.py --part gnc
    python benchmarks/run_benchmarks.py --part precision
    python benchmarks/run_benchmarks.py --part gd --activations linear
    python benchmarks/run_benchmarks.py --part gd --activations tanh
    python benchmarks/run_benchmarks.py --part gd --activations leaky_relu
    python benchmarks/run_benchmarks.py --report          # writes benchmarks/RESULTS.md

``--quick`` shrinks every part (fewer configurations, 10^4 GD steps) for a smoke run.
Every fast number is measured in the same process, next to the naive reference of
``benchmarks/naive.py``; timings are medians of repeats. Results go to
``benchmarks/results/<part>.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import naive  # noqa: E402

import volumelab as vl  # noqa: E402
from volumelab.optimizers._threads import map_in_threads  # noqa: E402
from volumelab.samplers import select_sampler  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPEATS = 3
TARGET_SECONDS = 0.8
FIG1_WIDTHS = (5, 10, 20, 40, 80, 160)
ACTIVATIONS = ("linear", "tanh", "leaky_relu")


def machine() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "?")
    except OSError:
        model = "?"
    return {
        "cpu": model,
        "logical_cpus": torch.multiprocessing.cpu_count() if hasattr(torch, "multiprocessing") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def median_rate(run, count: int) -> tuple[float, list[float]]:
    """Median of ``count / seconds`` over REPEATS calls of ``run()`` (after one warm-up)."""
    run()
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return count / statistics.median(seconds), seconds


def sized(rate_probe, minimum: int, target=TARGET_SECONDS) -> int:
    """A work size that takes about ``target`` seconds, from a small probe."""
    start = time.perf_counter()
    rate_probe(minimum)
    elapsed = max(time.perf_counter() - start, 1e-4)
    return max(minimum, int(minimum * target / elapsed))


# ---------------------------------------------------------------------------- rng
def bench_rng(quick: bool) -> dict:
    size = 1 << 24
    buffer = torch.empty(size)
    generator = torch.Generator().manual_seed(0)
    single, _ = median_rate(lambda: buffer.normal_(generator=generator), size)
    threads = torch.get_num_threads()
    chunks = [torch.empty(size // threads) for _ in range(threads)]
    generators = [torch.Generator().manual_seed(i) for i in range(threads)]

    def parallel():
        list(map_in_threads(lambda i: chunks[i].normal_(generator=generators[i]), threads, threads))

    parallel_rate, _ = median_rate(parallel, size)
    uniform, _ = median_rate(lambda: buffer.uniform_(generator=generator), size)
    return {
        "normal_float32_one_generator_per_s": single,
        "normal_float32_all_cores_per_s": parallel_rate,
        "uniform_float32_one_generator_per_s": uniform,
        "threads": threads,
    }


def rng_rates() -> dict:
    path = RESULTS / "rng.json"
    if path.exists():
        return json.loads(path.read_text())["results"]
    return bench_rng(True)


# ---------------------------------------------------------------------------- gnc
def gnc_configs(quick: bool) -> list[dict]:
    configs = []
    widths = (5, 160) if quick else FIG1_WIDTHS
    for activation in ACTIVATIONS:
        for width in widths:
            configs.append(dict(figure="1", width=width, depth=2, activation=activation, normalize=False, eps=0.02))
    for width in (600, 10_000):
        configs.append(dict(figure="1 (wider)", width=width, depth=2, activation="linear", normalize=False, eps=0.02))
    depths = (10,) if quick else (2, 4, 6, 8, 10)
    for activation in ACTIVATIONS:
        for depth in depths if activation == "linear" else (depths[-1],) if quick else (2, 6, 10):
            configs.append(dict(figure="2", width=5, depth=depth, activation=activation, normalize=True, eps=0.0035))
    return configs


def bench_gnc(quick: bool) -> list[dict]:
    problem = vl.make_sensing(5, 5, 1, 15, seed=0)
    rates = bench_rng(quick)  # measured in this run: the bound of this run's draws
    print(f"normals: {rates['normal_float32_all_cores_per_s']:,.0f}/s on all cores", flush=True)
    rows = []
    for config in gnc_configs(quick):
        model = vl.FactorizationModel(5, 5, config["width"], config["depth"], activation=config["activation"],
                                      normalize=config["normalize"])
        sampler = select_sampler(model)
        batch = max(256, min(1 << 15, (1 << 25) // (4 * model.num_parameters)))
        naive_count = sized(lambda n: naive.naive_gnc(problem, model, n, config["eps"], batch=batch), batch)
        naive_rate, naive_seconds = median_rate(
            lambda: naive.naive_gnc(problem, model, naive_count, config["eps"], batch=batch), naive_count)
        plain_batch = max(64, min(1 << 13, batch // 2))
        plain_count = sized(lambda n: naive.straightforward_gnc(problem, model, n, config["eps"], batch=plain_batch),
                            plain_batch)
        plain_rate, _ = median_rate(
            lambda: naive.straightforward_gnc(problem, model, plain_count, config["eps"], batch=plain_batch),
            plain_count)
        gnc = vl.GuessCheck(eps=config["eps"])
        fast_count = sized(lambda n: gnc.run(problem, model, n, seed=1), 1 << 16)
        fast_rate, fast_seconds = median_rate(lambda: gnc.run(problem, model, fast_count, seed=1), fast_count)
        numbers = sampler.random_numbers_per_sample(model)
        bound = rates["normal_float32_all_cores_per_s"] / numbers
        naive_numbers = float(model.num_parameters)
        row = dict(config)
        row.update(
            sampler=sampler.name,
            straightforward_draws_per_s=plain_rate,
            speedup_vs_straightforward=fast_rate / plain_rate,
            normals_all_cores_per_s=rates["normal_float32_all_cores_per_s"],
            naive_draws_per_s=naive_rate,
            fast_draws_per_s=fast_rate,
            speedup=fast_rate / naive_rate,
            random_numbers_per_draw=numbers,
            naive_random_numbers_per_draw=naive_numbers,
            rng_bound_draws_per_s=bound,
            fraction_of_rng_bound=fast_rate / bound,
            naive_rng_bound_draws_per_s=rates["normal_float32_one_generator_per_s"] / naive_numbers,
            naive_seconds=naive_seconds,
            fast_seconds=fast_seconds,
            fast_draws_per_repeat=fast_count,
        )
        rows.append(row)
        print(f"G&C fig {config['figure']:>9} {config['activation']:>10} w={config['width']:>5} d={config['depth']:>2} "
              f"{sampler.name:>8}: straightforward {plain_rate:11,.0f}/s  naive {naive_rate:12,.0f}/s  "
              f"fast {fast_rate:12,.0f}/s  x{fast_rate / plain_rate:7.1f} / x{fast_rate / naive_rate:5.1f}"
              f"  ({100 * fast_rate / bound:4.0f}% of RNG bound)", flush=True)
    return rows


# ---------------------------------------------------------------------- precision
def bench_precision(quick: bool) -> list[dict]:
    """Seconds to reach a target standard error of the accepted-draw generalization loss.

    A pilot run (fast sampler) estimates the acceptance rate p and the variance s^2
    of L_gen among accepted draws; reaching standard error e takes N = s^2 / (p e^2)
    draws, i.e. N / (draws per second) seconds for each implementation.
    """
    problem = vl.make_sensing(5, 5, 1, 15, seed=0)
    cases = [
        dict(figure="1", width=160, depth=2, activation="linear", normalize=False, eps=0.02, target_se=0.002),
        dict(figure="1", width=160, depth=2, activation="tanh", normalize=False, eps=0.02, target_se=0.002),
        dict(figure="2", width=5, depth=10, activation="linear", normalize=True, eps=0.0035, target_se=0.002),
    ]
    if quick:
        cases = cases[:1]
    rows = []
    for case in cases:
        model = vl.FactorizationModel(5, 5, case["width"], case["depth"], activation=case["activation"],
                                      normalize=case["normalize"])
        pilot = vl.GuessCheck(eps=case["eps"]).run(problem, model, 2_000_000 if quick else 8_000_000, seed=7)
        rate = pilot.metrics["acceptance_rate"]
        se = pilot.standard_errors["gen_loss"]
        variance = se**2 * pilot.metrics["accepted"]
        needed = variance / (rate * case["target_se"] ** 2)
        batch = max(256, min(1 << 15, (1 << 25) // (4 * model.num_parameters)))
        naive_count = sized(lambda n: naive.naive_gnc(problem, model, n, case["eps"], batch=batch), batch)
        naive_rate, _ = median_rate(lambda: naive.naive_gnc(problem, model, naive_count, case["eps"], batch=batch),
                                    naive_count)
        plain_batch = max(64, min(1 << 13, batch // 2))
        plain_count = sized(lambda n: naive.straightforward_gnc(problem, model, n, case["eps"], batch=plain_batch),
                            plain_batch)
        plain_rate, _ = median_rate(
            lambda: naive.straightforward_gnc(problem, model, plain_count, case["eps"], batch=plain_batch), plain_count)
        gnc = vl.GuessCheck(eps=case["eps"])
        fast_count = sized(lambda n: gnc.run(problem, model, n, seed=1), 1 << 16)
        fast_rate, _ = median_rate(lambda: gnc.run(problem, model, fast_count, seed=1), fast_count)
        row = dict(case)
        row.update(acceptance_rate=rate, accepted_gen_loss_std=variance**0.5, draws_needed=needed,
                   straightforward_seconds=needed / plain_rate, naive_seconds=needed / naive_rate,
                   fast_seconds=needed / fast_rate, speedup=fast_rate / naive_rate,
                   speedup_vs_straightforward=fast_rate / plain_rate)
        rows.append(row)
        print(f"SE {case['target_se']} fig {case['figure']} {case['activation']} w={case['width']} d={case['depth']}: "
              f"{needed:,.0f} draws; naive {needed / naive_rate:,.0f} s, fast {needed / fast_rate:,.0f} s", flush=True)
    return rows


# ----------------------------------------------------------------------------- gd
def bench_gd(quick: bool, activations: list[str]) -> list[dict]:
    """The GD arm of Figure 1: 6 widths x 8 seeds, group_rmsprop, lr 1e-4, init 1e-3.

    The library is timed as a figure uses it: ``run_sweep`` with one batch of all seeds
    per width, on one thread (each width's result depends on that width alone).
    """
    problem = vl.make_sensing(5, 5, 1, 15, seed=0)
    steps = 10_000 if quick else 100_000
    naive_steps = 500 if quick else 2_000
    seeds = list(range(8))
    gd = vl.GradientDescent(lr=1e-4, step_rule="group_rmsprop", init_scale=1e-3)
    rows = []
    for activation in activations:
        points = [(problem, vl.FactorizationModel(5, 5, w, 2, activation=activation)) for w in FIG1_WIDTHS]
        start = time.perf_counter()
        results = gd.run_sweep(points, steps, seeds)
        fast_seconds = time.perf_counter() - start
        naive_seconds_per_step = 0.0
        for _problem, model in points:
            naive.naive_gd_batch(gd, problem, model, 50, seeds)  # warm-up
            begin = time.perf_counter()
            naive.naive_gd_batch(gd, problem, model, naive_steps, seeds)
            naive_seconds_per_step += (time.perf_counter() - begin) / naive_steps
        naive_seconds = naive_seconds_per_step * steps
        run_steps = steps * len(seeds) * len(points)
        row = dict(
            activation=activation, widths=list(FIG1_WIDTHS), seeds=len(seeds), steps=steps,
            library_call="run_sweep", fast_seconds=fast_seconds, naive_seconds_extrapolated=naive_seconds,
            naive_measured_steps=naive_steps, speedup=naive_seconds / fast_seconds,
            fast_run_steps_per_s=run_steps / fast_seconds, naive_run_steps_per_s=run_steps / naive_seconds,
            final_train_loss_median={w: statistics.median(r.metrics["train_loss"] for r in res)
                                     for w, res in zip(FIG1_WIDTHS, results)},
            statuses=sorted({r.status for res in results for r in res}),
        )
        rows.append(row)
        print(f"GD fig 1 {activation}: {steps} steps x {len(seeds)} seeds x {len(points)} widths in "
              f"{fast_seconds:.1f} s, one batch per width (naive, extrapolated from {naive_steps} steps: "
              f"{naive_seconds:.0f} s)", flush=True)
    return rows


# ------------------------------------------------------------------------- report
def _fmt(value: float) -> str:
    return f"{value:,.0f}"


def _targets(parts: dict) -> list[str]:
    """The performance issue's targets, each checked against this run's numbers."""
    lines = ["## Targets (performance issue), as measured", "",
             "Ratios are against the straightforward reference (the kind the issue describes: float64,",
             "einsum losses); the float32 naive reference is shown for comparison.", "",
             "| target | measured | holds |", "|---|---|---|"]
    gnc = parts.get("gnc", {}).get("results", [])
    linear = [r for r in gnc if r["activation"] == "linear" and r["depth"] == 2 and not r["normalize"]]
    if linear:
        worst = min(linear, key=lambda r: r["fast_draws_per_s"])
        best = max(linear, key=lambda r: r["fast_draws_per_s"])
        lines.append(f"| linear, depth 2: >= 5,000,000 draws/s at every width up to 10^4 | "
                     f"{_fmt(worst['fast_draws_per_s'])} (width {worst['width']}) to {_fmt(best['fast_draws_per_s'])} "
                     f"(width {best['width']}) /s; {100 * worst['fraction_of_rng_bound']:.0f}-"
                     f"{100 * best['fraction_of_rng_bound']:.0f}% of the RNG bound | "
                     f"{'yes' if worst['fast_draws_per_s'] >= 5e6 else 'no'} |")
    for row in gnc:
        if row["activation"] == "linear" and row["width"] == 600:
            lines.append(f"| linear, width 600: >= 100x naive | x{row['speedup_vs_straightforward']:,.0f} "
                         f"(x{row['speedup']:,.0f} vs float32 naive) | "
                         f"{'yes' if row['speedup_vs_straightforward'] >= 100 else 'no'} |")
    for row in gnc:
        if row["activation"] in ("tanh", "leaky_relu") and row["width"] == 160 and row["depth"] == 2:
            lines.append(f"| {row['activation']}, depth 2, width 160: >= 8x naive | "
                         f"x{row['speedup_vs_straightforward']:.1f} (x{row['speedup']:.1f} vs float32 naive) | "
                         f"{'yes' if row['speedup_vs_straightforward'] >= 8 else 'no'} |")
    for row in gnc:
        if row["depth"] == 10 and row["width"] == 5 and row["normalize"]:
            lines.append(f"| {row['activation']}, depth 10, width 5, normalized: >= 5x naive | "
                         f"x{row['speedup_vs_straightforward']:.1f} (x{row['speedup']:.1f} vs float32 naive) | "
                         f"{'yes' if row['speedup_vs_straightforward'] >= 5 else 'no'} |")
    gd_rows = [row for name, part in parts.items() if name.startswith("gd") for row in part["results"]]
    for row in gd_rows:
        lines.append(f"| GD arm of Figure 1, {row['activation']} panel (10^5 steps, 8 seeds, 6 widths): < 2 min | "
                     f"{row['fast_seconds']:.0f} s | {'yes' if row['fast_seconds'] < 120 else 'no'} |")
    if len(gd_rows) == 3:
        total = sum(row["fast_seconds"] for row in gd_rows)
        lines.append(f"| (all three activation panels together) | {total:.0f} s | "
                     f"{'under' if total < 120 else 'over'} 2 min |")
    for name, part in parts.items():
        gd = part["results"].get("gd") if name.startswith("paper_") else None
        if gd:
            lines.append(f"| (all three panels through the sweep driver, one GD process per core) | "
                         f"{gd['wall_seconds']:.0f} s | {'under' if gd['wall_seconds'] < 120 else 'over'} 2 min |")
        if name.startswith("paper_"):
            r = part["results"]
            lines.append(f"| {r['figure']} G&C arm at paper scale within 1.5x of the RNG bound (experiments issue) | "
                         f"{r['paper_seconds'] / 3600:.2f} h projected vs {r['paper_bound_seconds'] / 3600:.2f} h bound: "
                         f"{r['ratio_to_bound']:.2f}x | {'yes' if r['ratio_to_bound'] <= 1.5 else 'no'} |")
    return lines + [""]


def _paper_section(part: dict) -> list[str]:
    """A figure's G&C arm at paper scale, projected from a slice run through the sweep driver."""
    r = part["results"]
    lines = [f"## {r['figure']} at paper scale on this machine (`benchmarks/paper_projection.py`, {part['machine']['date']})", "",
             f"The figure's G&C arm ran through the sweep driver on every grid point with {r['slice_seeds']} seed(s) x "
             f"{r['slice_samples']:,} draws ({r['slice_wall_seconds']:.0f} s wall); each point's time is scaled by "
             f"{r['scale_factor']:g} to the paper's {r['paper']['seeds']} seeds x {r['paper']['samples']:,} draws "
             f"({r['paper_draws']:.3g} draws in all). The bound is the random numbers each point's sampler must draw at "
             f"the normal rate measured before and after the slice ({_fmt(r['normals_per_s_before'])} and "
             f"{_fmt(r['normals_per_s_after'])}/s; their mean is used).", "",
             f"**Projected: {r['paper_seconds'] / 3600:.2f} h; random-number bound {r['paper_bound_seconds'] / 3600:.2f} h; "
             f"ratio {r['ratio_to_bound']:.2f}** (target: within 1.5x).", "",
             "| activation | width | depth | sampler | draws/s | RN/draw | % of bound | paper-scale time |",
             "|---|---:|---:|---|---:|---:|---:|---:|"]
    for p in r["points"]:
        lines.append(f"| {p['activation']} | {p['width']} | {p['depth']} | {p['sampler']} | {_fmt(p['draws_per_s'])} | "
                     f"{p['random_numbers_per_draw']:.0f} | {100 * p['draws_per_s'] / p['rng_bound_draws_per_s']:.0f}% | "
                     f"{p['paper_seconds'] / 60:.1f} min |")
    if "gd" in r:
        gd = r["gd"]
        lines += ["", f"GD arm at paper settings through the same driver ({gd['runs']} runs, {gd['steps']:,} steps, "
                      f"GD tasks in one helper process per core): {gd['wall_seconds']:.0f} s wall; statuses "
                      f"{', '.join(gd['statuses'])}."]
    return lines + [""]


def write_report() -> Path:
    parts = {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}
    lines = ["# Benchmark results", "",
             "Generated by `python benchmarks/run_benchmarks.py --report` from `benchmarks/results/*.json`.",
             "Every ratio compares the library with the references of `benchmarks/naive.py` measured",
             "in the same process, right after them; rates are medians of 3 timed repeats (after a warm-up).",
             "This machine is a shared 2-vCPU VM whose speed drifts over minutes (its float32 normal rate",
             "ranged from 377 to 769 million/s within one hour on 2026-11-23): compare numbers within one",
             "table (one run), not across runs.", ""]
    any_part = next(iter(parts.values()), None)
    if any_part:
        info = any_part["machine"]
        lines += ["## Machine", "", f"- CPU: {info['cpu']} ({info['logical_cpus']} logical CPUs)",
                  f"- torch {info['torch']}, {info['torch_threads']} intra-op threads; Python {info['python']}",
                  f"- {info['platform']}", ""]
        lines += ["Dates of the parts: " + ", ".join(f"{name} {part['machine']['date']}" for name, part in parts.items()),
                  ""]
    lines += _targets(parts)
    if "gnc" in parts:
        rows = parts["gnc"]["results"]
        normals = rows[0].get("normals_all_cores_per_s") if rows else None
        lines += ["## G&C draws per second (whole process: draws, losses, statistics)", ""]
        if normals:
            lines += [f"Normal generation measured at the start of this run: {_fmt(normals)} float32 normals/s with one",
                      "generator per core on all cores. RNG bound = that rate / random numbers per draw (a chi-square",
                      "counts 2): no exact sampler that draws those numbers can be faster.", ""]
        lines += ["| fig | activation | width | depth | sampler | straightforward /s | naive f32 /s | fast /s | "
                  "fast/straightf. | fast/naive | RN/draw | RNG bound /s | % of bound |",
                  "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in rows:
            lines.append(
                f"| {row['figure']} | {row['activation']} | {row['width']} | {row['depth']} | {row['sampler']} | "
                f"{_fmt(row.get('straightforward_draws_per_s', float('nan')))} | "
                f"{_fmt(row['naive_draws_per_s'])} | {_fmt(row['fast_draws_per_s'])} | "
                f"{row.get('speedup_vs_straightforward', float('nan')):,.1f} | {row['speedup']:.1f} | "
                f"{row['random_numbers_per_draw']:.0f} | {_fmt(row['rng_bound_draws_per_s'])} | "
                f"{100 * row['fraction_of_rng_bound']:.0f}% |")
        lines.append("")
    if "precision" in parts:
        lines += ["## Time to a target standard error of the G&C generalization loss", "",
                  "Draws needed N = s^2 / (p e^2) from a pilot run (p: acceptance rate, s: std of L_gen among",
                  "accepted draws, e: target SE); time = N / (draws per second of each implementation).", "",
                  "| fig | activation | width | depth | eps | target SE | acceptance | draws needed | straightforward | "
                  "naive f32 | fast | fast/straightf. |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in parts["precision"]["results"]:
            lines.append(
                f"| {row['figure']} | {row['activation']} | {row['width']} | {row['depth']} | {row['eps']} | "
                f"{row['target_se']} | {row['acceptance_rate']:.2e} | {row['draws_needed']:.3g} | "
                f"{row.get('straightforward_seconds', float('nan')):,.0f} s | "
                f"{row['naive_seconds']:,.0f} s | {row['fast_seconds']:,.1f} s | "
                f"{row.get('speedup_vs_straightforward', float('nan')):.1f} |")
        lines.append("")
    gd_rows = [row for name, part in parts.items() if name.startswith("gd") for row in part["results"]]
    if gd_rows:
        lines += ["## GD arm of Figure 1 (6 widths x 8 seeds, group_rmsprop, lr 1e-4, init 1e-3)", "",
                  "Naive: the original autograd loop with a host check per step, one width at a time, timed on",
                  "the stated number of steps and extrapolated linearly (its cost per step is constant).", "",
                  "Fast: `run_sweep(points, steps, seeds)`: one batch of all seeds per width, widths one after",
                  "the other on one thread (a width's results depend on that width alone).", ""]
        if any("library_call" not in row for row in gd_rows):
            lines += ["Rows marked (padded) were measured before `pad_widths` was removed from the library: they",
                      "timed `run_sweep(..., pad_widths=True)`, whose results depended on the other widths of the",
                      "sweep. Re-run `--part gd` to measure the library as it is.", ""]
        lines += ["| activation | steps | fast wall time | fast run-steps/s | naive (extrapolated) | "
                  "naive run-steps/s | fast/naive | statuses |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        for row in gd_rows:
            padded = "" if "library_call" in row else " (padded)"
            lines.append(
                f"| {row['activation']} | {row['steps']:,} | {row['fast_seconds']:.1f} s{padded} | "
                f"{_fmt(row['fast_run_steps_per_s'])} | "
                f"{row['naive_seconds_extrapolated']:.0f} s (from {row['naive_measured_steps']} steps) | "
                f"{_fmt(row['naive_run_steps_per_s'])} | {row['speedup']:.1f} | {', '.join(row['statuses'])} |")
        lines.append("")
    for name, part in parts.items():
        if name.startswith("paper_"):
            lines += _paper_section(part)
    path = HERE / "RESULTS.md"
    notes = HERE / "RESULTS_NOTES.md"
    if notes.exists():
        lines += [notes.read_text()]
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["rng", "gnc", "precision", "gd"], action="append")
    parser.add_argument("--activations", nargs="+", default=list(ACTIVATIONS), choices=ACTIVATIONS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # "no acceptance" warnings from short timing runs are expected
    RESULTS.mkdir(exist_ok=True)
    for part in args.part or []:
        if part == "rng":
            results = bench_rng(args.quick)
        elif part == "gnc":
            results = bench_gnc(args.quick)
        elif part == "precision":
            results = bench_precision(args.quick)
        else:
            results = bench_gd(args.quick, args.activations)
            part = "gd_" + "_".join(args.activations)
        payload = {"machine": machine(), "quick": args.quick, "results": results}
        (RESULTS / f"{part}.json").write_text(json.dumps(payload, indent=1, default=str))
    if args.report:
        print(f"wrote {write_report()}")


if __name__ == "__main__":
    main()
