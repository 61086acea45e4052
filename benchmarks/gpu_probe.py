"""GPU throughput in one command: normal generation, G&C draws/s, GD steps/s, figure 1 projected.

Run from the repository root on a machine with a CUDA GPU:

    python benchmarks/gpu_probe.py               # about 2-4 minutes on an H100

It measures, on ``cuda``:

* the float32 normal-generation rate (the random-number bound of every sampler);
* G&C draws/s for figure 1's 18 points (depth 2, widths 5-160, three activations) and
  for depth 10 at width 5, each next to its RNG bound (normal rate / numbers per draw);
* GD microseconds per step (8 seeds, width 160), for reference: GD defaults to the CPU;
* figure 1's G&C arm at paper scale (8 seeds x 10^8 draws per point), projected from
  those rates (a run's cost is linear in its draws).

Results go to ``$OUT/gpu_probe.json`` when ``OUT`` is set, else to
``benchmarks/results/gpu_probe.json``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

import volumelab as vl
from volumelab.samplers import select_sampler

FIG1_WIDTHS = (5, 10, 20, 40, 80, 160)
ACTIVATIONS = ("linear", "tanh", "leaky_relu")
PAPER_DRAWS_PER_POINT = 8 * 10**8  # 8 seeds x 10^8 draws


def normal_rate(device: torch.device) -> float:
    buffer = torch.empty(1 << 28, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    buffer.normal_(generator=generator)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        buffer.normal_(generator=generator)
    torch.cuda.synchronize()
    return 10 * buffer.numel() / (time.perf_counter() - start)


def gnc_rate(problem, model, draws: int) -> tuple[float, dict]:
    gnc = vl.GuessCheck(eps=0.02, device="cuda")
    gnc.run(problem, model, min(draws, 1 << 22), seed=1)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = gnc.run(problem, model, draws, seed=1)
    torch.cuda.synchronize()
    return draws / (time.perf_counter() - start), result.diagnostics


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("gpu_probe: PyTorch sees no CUDA GPU")
    device = torch.device("cuda")
    normals = normal_rate(device)
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}: {normals / 1e9:.0f} billion normals/s",
          flush=True)
    problem = vl.make_sensing(5, 5, 1, 15, seed=0)
    configs = [(activation, width, 2, False) for activation in ACTIVATIONS for width in FIG1_WIDTHS]
    configs += [("linear", 5, 10, True), ("tanh", 5, 10, True)]
    rows, projected = [], 0.0
    for activation, width, depth, normalize in configs:
        model = vl.FactorizationModel(5, 5, width, depth, activation=activation, normalize=normalize)
        sampler = select_sampler(model)
        rate, diagnostics = gnc_rate(problem, model, 1 << 26)
        bound = normals / sampler.random_numbers_per_sample(model)
        row = dict(activation=activation, width=width, depth=depth, normalize=normalize, sampler=sampler.name,
                   block_size=diagnostics["block_size"], draws_per_s=rate, rng_bound_draws_per_s=bound)
        rows.append(row)
        if depth == 2:
            projected += PAPER_DRAWS_PER_POINT / rate
        print(f"G&C {activation:>10} w={width:>4} d={depth:>2} {sampler.name:>9} block {row['block_size']:>8}: "
              f"{rate:14,.0f} draws/s ({100 * rate / bound:5.1f}% of RNG bound)", flush=True)
    gd_rows = {}
    for activation in ("linear", "tanh"):
        model = vl.FactorizationModel(5, 5, 160, 2, activation=activation)
        gd = vl.GradientDescent(lr=1e-4, step_rule="group_rmsprop", init_scale=1e-3, device="cuda")
        gd.run_batch([problem], model, 200, list(range(8)))
        torch.cuda.synchronize()
        start = time.perf_counter()
        gd.run_batch([problem], model, 3000, list(range(8)))
        gd_rows[activation] = (time.perf_counter() - start) / 3000 * 1e6
        print(f"GD {activation} width 160, 8 seeds: {gd_rows[activation]:.0f} us/step", flush=True)
    print(f"figure 1 G&C arm at paper scale (1.44e10 draws), projected: {projected / 60:.1f} min", flush=True)
    payload = {
        "machine": {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                    "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")},
        "normals_per_s": normals, "gnc": rows, "gd_us_per_step_width160_8_seeds": gd_rows,
        "figure1_paper_gnc_projected_seconds": projected,
    }
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(__file__).resolve().parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_probe.json").write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
