"""Is a Gram-trick sampler worth building for the linear CP prior? Direct draws against a prototype, one run.

The ``gram`` sampler of the matrix factorization draws the output layer's contribution from its law
given the rest. For the plain linear CP model with the Gaussian prior the same holds for mode 0: given
the other factors, the mode-0 unfolding ``T_(0) = F_0 KR^T`` has i.i.d. rows ``N(0, s_0^2 KR KR^T)``
(``KR``: the Khatri-Rao product of the other factors, ``P x R`` with ``P = prod(dims[1:])``), so
``T_(0) = s_0 Z L^T`` with ``L L^T = KR KR^T``: ``dims[0] x P`` normals instead of ``dims[0] x R``, at
the price of a ``P x P`` Gram (``P^2 R`` multiply-adds) and its Cholesky factor. This script times the
package's ``direct`` sampler (``CPModel.end_to_end(sample_prior(...))``) against that prototype on the
tensor studies' shape (4 x 4 x 4) at R = 16, 64, 256, alternating, and checks that the prototype draws
the same law (the entry variance and the mean fourth power of the entries, each within 4 SE of the direct
draws'). The prototype lives here only: it is not a sampler of the package.

    python benchmarks/cp_samplers.py        # about 1 minute on 2 cores

Results go to ``benchmarks/results/cp_samplers.json``.
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import torch

from volumelab.models import CPModel

DIMS = (4, 4, 4)
WIDTHS = (16, 64, 256)
BLOCK = 4096
BLOCKS = 10
REPEATS = 5


def direct(model: CPModel, n: int, generator: torch.Generator) -> torch.Tensor:
    return model.end_to_end(model.sample_prior(n, generator))


def gram_prototype(model: CPModel, n: int, generator: torch.Generator) -> torch.Tensor:
    """``T`` with mode 0 drawn from its law given the other factors (linear plain CP, Gaussian prior)."""
    dims, scales = model.dims, model.layer_scales  # layers: modes 1 .. N-1 (R x dims[n]), then mode 0
    factors = [torch.randn(n, model.width, size, generator=generator) * scale
               for size, scale in zip(dims[1:], scales[:-1])]
    kr = factors[0]
    for factor in factors[1:]:
        kr = (kr.unsqueeze(-1) * factor.unsqueeze(-2)).flatten(-2)  # (n, R, P)
    lower, _ = torch.linalg.cholesky_ex(kr.transpose(1, 2) @ kr)  # (n, P, P); R >= P keeps it regular
    z = torch.randn(n, dims[0], kr.shape[-1], generator=generator) * scales[-1]
    return (z @ lower.transpose(1, 2)).reshape(n, *dims)


def _rate(draw, model: CPModel, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    draw(model, BLOCK, generator)  # warm up
    start = time.perf_counter()
    for _ in range(BLOCKS):
        draw(model, BLOCK, generator)
    return BLOCK * BLOCKS / (time.perf_counter() - start)


def _moments(draw, model: CPModel, seed: int) -> dict:
    flat = torch.cat([draw(model, BLOCK, torch.Generator().manual_seed(seed + i)).flatten(1).double()
                      for i in range(10)])
    out = {}
    for name, values in (("variance", flat.square().mean(1)), ("fourth", flat.pow(4).mean(1))):
        out[name] = (float(values.mean()), float(values.std() / math.sqrt(len(values))))
    return out


def main() -> None:
    rows = []
    for width in WIDTHS:
        model = CPModel(DIMS, width)
        rates = {"direct": [], "gram": []}
        for repeat in range(REPEATS):
            for name, draw in (("direct", direct), ("gram", gram_prototype)):
                rates[name].append(_rate(draw, model, repeat))
        medians = {name: sorted(values)[len(values) // 2] for name, values in rates.items()}
        a, b = _moments(direct, model, 100), _moments(gram_prototype, model, 200)
        same_law = all(abs(a[k][0] - b[k][0]) < 4 * math.hypot(a[k][1], b[k][1]) for k in a)
        row = {"width": width, "direct_draws_per_s": medians["direct"], "gram_draws_per_s": medians["gram"],
               "ratio": medians["gram"] / medians["direct"], "rates": rates, "moments_direct": a,
               "moments_gram": b, "same_law_within_4_se": same_law,
               "entry_variance_closed_form": model.entry_variance()}
        rows.append(row)
        print(f"R = {width:4d}: direct {medians['direct'] / 1e3:7.1f}k/s  gram prototype "
              f"{medians['gram'] / 1e3:7.1f}k/s  ratio {row['ratio']:.2f}  same law: {same_law} "
              f"(entry variance {a['variance'][0]:.4f} / {b['variance'][0]:.4f}, closed form "
              f"{model.entry_variance():.4f})")
    out = Path(__file__).parent / "results" / "cp_samplers.json"
    out.parent.mkdir(exist_ok=True)
    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__}
    out.write_text(json.dumps({"machine": machine, "dims": DIMS, "block": BLOCK, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
