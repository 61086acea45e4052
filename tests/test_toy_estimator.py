"""A new G&C estimator is one file: registered by one decorator (and one line for sweeps), it runs from the
command line (``gnc --method NAME`` with its own options) and from a sweep, and its output follows its declared
result schema.

The file is written to a temporary folder and imported before the command line (as a plug-in would be);
nothing else in the package is touched. Its numbers are checked against the built-in rejection estimator's:
both estimate the same prior volume with independent draws.
"""

from __future__ import annotations

import json
import math

from plugin_testing import volumelab_with, write_plugin

TOY = '''
import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from volumelab.settings import setting
from volumelab.experiments import estimator_method, register_method
from volumelab.optimizers import ConditionalEstimator, Metric, ResultSchema, RunResult, register_estimator
from volumelab.optimizers.conditioning import scorer_for
from volumelab.samplers import select_sampler


@register_estimator
@dataclass(frozen=True)
class ChunkedRejection(ConditionalEstimator):
    """Rejection in ``chunks`` equal chunks, each from its own generator; the volume's standard error is the
    chunks' spread."""

    chunks: int = setting(4, minimum=2, doc="Independent chunks; the standard error is their spread.")

    name: ClassVar[str] = "chunked"
    summary: ClassVar[str] = "rejection in independent chunks (a toy)"
    schema: ClassVar[ResultSchema] = ResultSchema(
        metrics=(Metric("gen_loss", "mean gen. loss of the accepted draws"),
                 Metric("train_loss", "mean training loss of the accepted draws"),
                 Metric("prior_gen_loss", "mean gen. loss of all draws"),
                 Metric("prior_train_loss", "mean training loss of all draws"),
                 Metric("log_volume", "log of the acceptance rate, its SE from the chunks"),
                 Metric("accepted", "accepted draws", kind="count"),
                 Metric("samples", "prior draws", kind="count"),
                 Metric("eps", "the threshold", kind="value"), Metric("accept", "the score", kind="value")),
        statuses={"ok": "something accepted", "no_acceptance": "nothing accepted"})

    def __post_init__(self):
        super().__post_init__()
        if self.chunks < 2:
            raise ValueError(f"chunks must be >= 2, got {self.chunks}")

    def run(self, problem, model, budget, seed=0):
        self.check_run(problem, model, budget)
        cpu = torch.device("cpu")
        scorer = scorer_for(model, problem, cpu, self.eps, self.accept)
        row = ("train_loss", "gen_loss", *scorer.metric_names).index(self.accept)
        sampler = select_sampler(model, "auto")
        size = budget // self.chunks
        rates, scores = [], []
        for chunk in range(self.chunks):
            generator = torch.Generator().manual_seed(1_000_003 * seed + chunk)
            chunk_scores = scorer(sampler.sample(model, size, generator, dtype=torch.float64, device=cpu))
            rates.append(float((chunk_scores[row] < self.eps).double().mean()))
            scores.append(chunk_scores)
        scores = torch.cat(scores, dim=1)
        kept = scores[:, scores[row] < self.eps]
        accepted = int(kept.shape[1])
        rate = sum(rates) / len(rates)
        spread = torch.tensor(rates, dtype=torch.float64).std().item() / math.sqrt(len(rates))
        metrics = {"gen_loss": float(kept[1].mean()) if accepted else None,
                   "train_loss": float(kept[0].mean()) if accepted else None,
                   "prior_gen_loss": float(scores[1].mean()), "prior_train_loss": float(scores[0].mean()),
                   "log_volume": math.log(rate) if accepted else None, "accepted": accepted,
                   "samples": size * self.chunks, "eps": self.eps, "accept": self.accept}
        errors = {"log_volume": spread / rate if accepted else None}
        return RunResult("gnc", "ok" if accepted else "no_acceptance", metrics, errors, {}, {"seed": seed})


register_method(estimator_method(ChunkedRejection))
'''

SWEEP = """\
name: toy-estimator
x: model.depth
problem: {task: sensing, rows: 4, cols: 4, rank: 1, measurements: 8}
model: {width: 4}
methods:
  chunked: {eps: 0.1, samples: 4000, chunks: 4}
  gnc: {eps: 0.1, samples: 4000}
grid:
  model.depth: [1, 2]
seeds: 2
"""

PROBLEM = ["--task", "sensing", "--rows", "4", "--cols", "4", "--rank", "1", "--measurements", "8", "--width", "4",
           "--depth", "2", "--eps", "0.1"]


def _volumelab(tmp_path, *args: str, code: str | None = None):
    return volumelab_with(tmp_path, "toy_estimator", *args, code=code)


def test_a_toy_estimator_runs_from_the_command_line_and_a_sweep(tmp_path):
    write_plugin(tmp_path, "toy_estimator", TOY)
    toy = _volumelab(tmp_path, "gnc", *PROBLEM, "--method", "chunked", "--chunks", "8", "--samples", "200000",
                     "--json")
    assert toy.returncode == 0, toy.stderr
    mine = json.loads(toy.stdout)
    builtin = _volumelab(tmp_path, "gnc", *PROBLEM, "--samples", "200000", "--json")
    assert builtin.returncode == 0, builtin.stderr
    reference = json.loads(builtin.stdout)
    assert mine["samples"] == 200000 and mine["accepted"] > 100
    # The same volume by independent draws: within 4 standard errors (fixed seeds; both SEs are estimates).
    difference = mine["log_volume"] - reference["log_volume"]
    assert abs(difference) < 4 * math.hypot(mine["log_volume_stderr"], reference["log_volume_stderr"])
    # Its output without --json is its declared schema's (the generic lines: one per metric present).
    text = _volumelab(tmp_path, "gnc", *PROBLEM, "--method", "chunked", "--samples", "20000")
    assert text.returncode == 0, text.stderr
    assert "status: ok" in text.stdout and "log_volume:" in text.stdout and "±" in text.stdout
    # Its option belongs to it: with another method it is a one-line usage error naming the owner.
    wrong = _volumelab(tmp_path, "gnc", *PROBLEM, "--chunks", "3", "--samples", "1000")
    assert wrong.returncode == 2 and "--chunks works with --method chunked only" in wrong.stderr
    (tmp_path / "toy.yaml").write_text(SWEEP, encoding="utf-8")
    sweep = _volumelab(tmp_path, "run", "toy.yaml", "--out", "out", "--no-report")
    assert sweep.returncode == 0, sweep.stderr
    # The results table, read where the plug-in is loaded (its columns are its registration's).
    table = _volumelab(tmp_path, code="import toy_estimator, volumelab; volumelab.load_results('out').to_csv('t.csv')")
    assert table.returncode == 0, table.stderr
    import pandas as pd

    frame = pd.read_csv(tmp_path / "t.csv")
    assert set(frame["method"]) == {"chunked", "chunked_prior", "gnc", "prior"} and len(frame) == 2 * 2 * 4
    chunked = frame[frame["method"] == "chunked"]
    assert chunked["log_volume"].notna().all() and (chunked["samples"] == 4000).all()
