"""Empirical NTK Gram: time and peak memory of both torch.func methods against a plain autograd loop.

For MLPs (ReLU, depth 2, standard parametrization, float64) of increasing width on the
``digits`` inputs (64 features), it computes the ``m x m`` Gram ``K = J J^T`` of the
training outputs three ways, in the same run:

* ``jacobian``: :func:`volumelab.diagnostics.empirical_ntk` with ``method="jacobian"``
  (per-point gradients vmapped over rows, accumulated over parameter slices), at the
  default 1 GiB budget;
* ``vp``: the same with ``method="vp"`` (``K e_i = J (J^T e_i)``, a vjp then a jvp over the
  whole training set, vmapped over identity columns), at the default budget;
* ``factors``: the same with ``method="factors"`` (the MLP's outer-product gradient factors,
  ``K = sum_j (G_j G_j^T) * (A_j A_j^T)``: one forward and one backward pass, no Jacobian);
* ``naive``: one forward pass on the training points, one ``torch.autograd.grad`` per
  training output (``retain_graph``), the rows stacked into ``J``, then ``J @ J.T``.

Every (method, points, width) runs in a fresh subprocess: it builds the data, model and
layers, records its maximum resident set size (``getrusage`` ``ru_maxrss``), then computes
the Gram ``repeats`` times. Time: the median over the repeats (each repeat timed on its
own, after a warm-up Gram of a tiny net in the same process that pays torch.func's one-time
setup, reported as ``warm_up_seconds``). Memory: ``peak_rss`` is the process's high-water RSS over
the repeats, ``peak_increase`` is that minus the high-water RSS before the first Gram (what
the Gram itself added: tensors, autograd graphs and the allocator's unreturned pages), and
``first_repeat_peak_increase`` the same after the first repeat only (later repeats can add
heap the allocator kept from the earlier ones). Each
Gram is saved, and the others are compared with ``jacobian``'s of the same size
(``max |K - K_jacobian| / max |K_jacobian|``).

The ``digits`` data set of scikit-learn is used with all ten classes (1,797 points;
``make_supervised`` keeps two classes, at most 356 points): the first ``m`` points of a
``(seed 0, "data")`` permutation train, inputs standardized with their statistics; labels
(digit >= 5) do not enter the NTK. Every method runs at every size up to 1,000 points and
width 4,096, with one repeat where a Gram takes over 20 s (see ``configurations``).

    python benchmarks/ntk_gram.py --out benchmarks/results/ntk_gram.json
    python benchmarks/ntk_gram.py --methods factors --out benchmarks/results/ntk_gram_factors.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
METHODS = ("jacobian", "vp", "factors", "naive")


def configurations(quick: bool) -> list[dict]:
    """``(method, num_train, width, repeats)`` rows, the reference method first for each size."""
    if quick:
        return [dict(method=method, num_train=50, width=64, repeats=2) for method in METHODS]
    rows = []
    for width in (256, 1024, 4096):  # m = 250: all three methods, 3 repeats
        rows += [dict(method=method, num_train=250, width=width, repeats=3) for method in METHODS]
    # m = 1000: vp costs m full-batch passes (about 90 s at width 4096): fewer repeats there.
    rows += [dict(method="jacobian", num_train=1000, width=width, repeats=3) for width in (256, 1024, 4096)]
    rows += [dict(method="vp", num_train=1000, width=256, repeats=3), dict(method="vp", num_train=1000, width=1024, repeats=1),
             dict(method="vp", num_train=1000, width=4096, repeats=1)]
    rows += [dict(method="factors", num_train=1000, width=width, repeats=3) for width in (256, 1024, 4096)]
    rows += [dict(method="naive", num_train=1000, width=256, repeats=3),
             dict(method="naive", num_train=1000, width=1024, repeats=3),
             dict(method="naive", num_train=1000, width=4096, repeats=1)]
    return rows


def digits_problem(num_train: int):
    """All ten digit classes: ``num_train`` points to train, the rest to test (see the module docstring)."""
    from sklearn.datasets import load_digits

    from volumelab._rng import make_generator
    from volumelab.problems import SupervisedProblem

    bunch = load_digits()
    inputs = torch.as_tensor(bunch.data, dtype=torch.float64)
    labels = torch.where(torch.as_tensor(bunch.target) >= 5, 1.0, -1.0).to(torch.float64)
    order = torch.randperm(len(inputs), generator=make_generator(0, "data"))
    train, test = order[:num_train], order[num_train:]
    mean, std = inputs[train].mean(0), inputs[train].std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant pixels are centred, not divided by zero
    return SupervisedProblem((inputs[train] - mean) / std, labels[train], (inputs[test] - mean) / std, labels[test])


def naive_gram(model, layers, problem) -> torch.Tensor:
    """One ``torch.autograd.grad`` per training output, the rows stacked into ``J``, then ``J J^T``."""
    from volumelab.diagnostics import training_outputs_function

    function = training_outputs_function(model, problem)
    parameters = [layer.clone().requires_grad_() for layer in layers]
    outputs = function(parameters)
    rows = []
    for i in range(outputs.shape[0]):
        gradients = torch.autograd.grad(outputs[i], parameters, retain_graph=True)
        rows.append(torch.cat([gradient.reshape(-1) for gradient in gradients]))
    jacobian = torch.stack(rows)
    return jacobian @ jacobian.T


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def worker(spec: dict) -> dict:
    """One configuration in this (fresh) process; returns its timings and memory."""
    from volumelab.diagnostics import empirical_ntk, sample_layers
    from volumelab.models import MLPModel

    def gram_of(num_train: int, width: int):
        problem = digits_problem(num_train)
        model = MLPModel(problem.num_features, width, 2, "relu")
        layers = sample_layers(model, 0)
        if spec["method"] == "naive":
            return model, lambda: naive_gram(model, layers, problem)
        return model, lambda: empirical_ntk(model, layers, problem, method=spec["method"])

    # torch.func's first call in a process costs ~2 s of one-time setup: paid here, on a tiny net.
    _tiny, warm_up = gram_of(8, 8)
    start = time.perf_counter()
    warm_up()
    warm_up_seconds = time.perf_counter() - start
    model, compute = gram_of(spec["num_train"], spec["width"])
    before = max_rss_bytes()
    seconds, gram, first_peak = [], None, None
    for _ in range(spec["repeats"]):
        gram = None  # the previous repeat's Gram is freed first
        start = time.perf_counter()
        gram = compute()
        seconds.append(time.perf_counter() - start)
        first_peak = first_peak or max_rss_bytes()
    peak = max_rss_bytes()
    torch.save(gram, spec["save"])
    return {"warm_up_seconds": warm_up_seconds, "seconds": seconds, "median_seconds": statistics.median(seconds), "rss_before_bytes": before,
            "peak_rss_bytes": peak, "peak_increase_bytes": peak - before,
            "first_repeat_peak_increase_bytes": first_peak - before, "num_parameters": model.num_parameters,
            "jacobian_bytes": 8 * spec["num_train"] * model.num_parameters}


def run_in_subprocess(spec: dict) -> dict:
    completed = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                               text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{spec} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ntk_gram.json")
    parser.add_argument("--quick", action="store_true", help="one tiny size (a smoke test of this script)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated methods to time (jacobian, the reference, always runs)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        chosen = set(args.methods.split(",")) | {"jacobian"}
        if chosen - set(METHODS):
            parser.error(f"unknown method(s) {sorted(chosen - set(METHODS))}; expected some of {', '.join(METHODS)}")
        for spec in [spec for spec in configurations(args.quick) if spec["method"] in chosen]:
            spec = dict(spec, save=str(Path(folder) / f"{spec['method']}_{spec['num_train']}_{spec['width']}.pt"))
            result = run_in_subprocess(spec)
            row = {key: spec[key] for key in ("method", "num_train", "width", "repeats")} | result
            reference = Path(folder) / f"jacobian_{spec['num_train']}_{spec['width']}.pt"
            gram, expected = torch.load(spec["save"]), torch.load(reference)
            row["relative_difference_to_jacobian"] = float((gram - expected).abs().max() / expected.abs().max())
            rows.append(row)
            print(f"{spec['method']:9s} m {spec['num_train']:5d} width {spec['width']:5d} "
                  f"P {row['num_parameters']:8,d}: {row['median_seconds']:8.2f} s (x{spec['repeats']}), "
                  f"peak +{row['peak_increase_bytes'] / 2**20:7.0f} MiB (RSS {row['peak_rss_bytes'] / 2**20:6.0f} MiB), "
                  f"diff {row['relative_difference_to_jacobian']:.1e}", flush=True)
    by_key = {(row["method"], row["num_train"], row["width"]): row for row in rows}
    for row in rows:
        key = (row["num_train"], row["width"])
        for other in ("naive", "jacobian"):
            if other != row["method"] and (other, *key) in by_key:
                row[f"speedup_over_{other}"] = by_key[(other, *key)]["median_seconds"] / row["median_seconds"]
    payload = {
        "benchmark": "ntk_gram",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "model": "MLPModel(64, width, depth=2, relu, standard parametrization), float64, layers = sample_layers(model, 0)",
        "data": "sklearn digits, all 10 classes, first num_train points of the (0, 'data') permutation, standardized",
        "memory_budget_bytes": "default of empirical_ntk (1 GiB) for jacobian and vp; none for naive",
        "time": "median over the row's repeats of the wall time of one Gram, after a warm-up on a tiny net",
        "memory": ("peak_rss_bytes: getrusage max RSS of the row's fresh process; peak_increase_bytes: that minus the "
                   "max RSS before the first Gram"),
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.out} in {payload['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
