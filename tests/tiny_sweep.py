"""A tiny sweep shared by the experiment and plotting tests (thousands of draws, tens of GD steps)."""

from __future__ import annotations

import textwrap
from pathlib import Path


TINY = """\
name: tiny
claim: width
x: model.width
panel: model.activation
problem: {task: sensing, rows: 4, cols: 4, rank: 1, measurements: 8}
model: {depth: 2}
methods:
  gnc: {eps: 0.1, samples: 3000}
  gd: {lr: 1.0e-2, steps: 20, init_scale: 1.0e-3}
grid:
  model.activation: [linear, tanh]
  model.width: [4, 8]
seeds: 3
scales:
  quick:
    note: fewer draws
    set: {methods.gnc.samples: 2000}
"""


def write_config(directory: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path

