"""A new model family is one file: registered by one line, it runs from the command line and from a sweep.

The file is written to a temporary folder and imported before the command line (as a plug-in would be);
nothing else in the package is touched."""

from __future__ import annotations

import json

from plugin_testing import volumelab_with, write_plugin

TOY = '''
import dataclasses

import torch

from volumelab.experiments import register_model_kind
from volumelab.experiments.kinds import family_kind
from volumelab.models import LayeredModel, activation_for
from volumelab.models.layers import setting


@dataclasses.dataclass(frozen=True)
class ToyProduct(LayeredModel):
    """f(x) = <u_1 * ... * u_d, x>, each u_j standard Gaussian."""

    in_features: int
    depth: int = setting(3, minimum=1, doc="Factors of the product.")
    prior: str = setting("gaussian", choices=("gaussian",))
    lift: float = setting(1.0, doc="A field no built-in family has.")

    family = "toy_product"
    gnc_block_size = 1024

    def __post_init__(self):
        object.__setattr__(self, "_activation_function", activation_for("linear"))

    @property
    def layer_shapes(self):
        return ((1, self.in_features),) * self.depth

    @property
    def layer_scales(self):
        return (self.lift,) * self.depth

    def outputs(self, weights, tensors):
        w = weights[0]
        for u in weights[1:]:
            w = w * u
        return torch.matmul(w, tensors.inputs.transpose(-1, -2)).squeeze(-2)

    def problem_mismatch(self, problem):
        if problem.task != "supervised" or problem.num_features != self.in_features:
            return "a toy product needs supervised data"
        return None

    def describe(self):
        return {"family": self.family, "in_features": self.in_features, "depth": self.depth, "lift": self.lift}


register_model_kind(family_kind(ToyProduct))
'''

SWEEP = """\
name: toy
x: model.depth
problem: {kind: supervised, data: teacher, train: 20, loss: logistic, features: 5}
model: {kind: toy_product, lift: 0.9}
methods:
  gnc: {eps: 0.5, samples: 4096}
  gd: {lr: 0.1, steps: 30, init_scale: 1.0}
grid:
  model.depth: [2, 3]
seeds: 2
"""


def _volumelab(tmp_path, *args: str, code: str | None = None):
    return volumelab_with(tmp_path, "toy_family", *args, code=code)


def test_a_toy_family_runs_from_the_command_line_and_a_sweep(tmp_path):
    write_plugin(tmp_path, "toy_family", TOY)
    common = ["--model", "toy_product", "--data", "teacher", "--loss", "logistic", "--train", "20", "--lift", "0.9",
              "--json"]
    gd = _volumelab(tmp_path, "gd", *common, "--lr", "0.1", "--init-scale", "1", "--steps", "30")
    assert gd.returncode == 0, gd.stderr
    result = json.loads(gd.stdout)
    assert result["model"] == {"family": "toy_product", "in_features": 10, "depth": 3, "lift": 0.9}
    assert result["status"] == "completed" and 0 <= result["test_error"] <= 1
    gnc = _volumelab(tmp_path, "gnc", *common, "--eps", "0.6", "--samples", "4096")
    assert gnc.returncode == 0, gnc.stderr
    assert json.loads(gnc.stdout)["samples"] == 4096
    # An option of another family is a one-line error naming the families that have it.
    wrong = _volumelab(tmp_path, "gd", *common, "--width", "4", "--lr", "0.1", "--steps", "3")
    assert wrong.returncode == 2 and "--width need(s) --model" in wrong.stderr and "toy_product" not in \
        wrong.stderr.split("need(s)")[1]
    (tmp_path / "toy.yaml").write_text(SWEEP, encoding="utf-8")
    sweep = _volumelab(tmp_path, "run", "toy.yaml", "--out", "out", "--no-report")
    assert sweep.returncode == 0, sweep.stderr
    import volumelab as vl

    frame = vl.load_results(tmp_path / "out")
    assert set(frame["method"]) == {"gnc", "prior", "gd"} and len(frame) == 2 * 2 * 3
