"""A new trainer is one file: registered by one decorator, it is a command of its own (``volumelab NAME``) with
GD's options and one option per field of its own, and its output follows the trainers' declared schema.

The file is written to a temporary folder and imported before the command line (as a plug-in would be)."""

from __future__ import annotations

import json

from plugin_testing import volumelab_with, write_plugin

TOY = '''
import dataclasses

import torch

from volumelab.optimizers import GradientDescent
from volumelab.optimizers.gradient import register_trainer
from volumelab.optimizers.transforms import GradientTransformation, Update
from volumelab.settings import setting


@register_trainer
@dataclasses.dataclass(frozen=True)
class SignGD(GradientDescent):
    """GD on the sign of the gradient, each entry scaled by ``gain``."""

    gain: float = setting(1.0, minimum=0, exclusive=True, doc="Multiplier of the sign.")

    method = "signgd"
    summary = "GD on the sign of the gradient (a toy trainer)."

    def preconditioner(self) -> GradientTransformation:
        def update(update, state, context):
            return Update(self.gain * torch.sign(update.materialize())), state

        return GradientTransformation(lambda params: None, update)
'''

COMMON = ["--task", "sensing", "--rows", "5", "--cols", "5", "--rank", "1", "--measurements", "15", "--width", "5",
          "--depth", "2", "--lr", "1e-3", "--init-scale", "1e-2", "--steps", "300"]


def _volumelab(tmp_path, *args: str, code: str | None = None):
    return volumelab_with(tmp_path, "toy_trainer", *args, code=code)


def test_a_toy_trainer_is_a_command_with_its_own_options(tmp_path):
    write_plugin(tmp_path, "toy_trainer", TOY)
    listed = _volumelab(tmp_path, "--help")
    assert listed.returncode == 0 and "signgd" in listed.stdout and "GD on the sign of the gradient" in listed.stdout
    one = json.loads(_volumelab(tmp_path, "signgd", *COMMON, "--json").stdout)
    half = json.loads(_volumelab(tmp_path, "signgd", *COMMON, "--gain", "0.5", "--json").stdout)
    plain = json.loads(_volumelab(tmp_path, "gd", *COMMON, "--json").stdout)
    assert one["status"] == half["status"] == "completed" and one["diagnostics"]["optimizer"] == "gd"
    # Its own option reaches it (a smaller gain moves less: a different end point), and GD is untouched by it.
    assert one["train_loss"] != half["train_loss"] and plain["train_loss"] not in (one["train_loss"],
                                                                                  half["train_loss"])
    text = _volumelab(tmp_path, "signgd", *COMMON)
    assert text.returncode == 0 and "SIGNGD (gd) completed after 300 steps" in text.stdout
    bad = _volumelab(tmp_path, "signgd", *COMMON, "--gain", "0")
    assert bad.returncode == 2 and "--gain" in bad.stderr
    assert _volumelab(tmp_path, "gd", *COMMON, "--gain", "2").returncode == 2  # not GD's option
