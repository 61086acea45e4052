"""Method runners: how one sweep task turns settings into stored rows.

A runner receives a built problem per seed, the model and the method's settings and
returns one :class:`~volumelab.optimizers.RunResult` per seed. New optimizers plug in
with :func:`register_method` (and :func:`~volumelab.experiments.config.register_method_config`
for their settings).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from ..device import resolve_device
from ..models import FactorizationModel
from ..optimizers import GradientDescent, GuessCheck, RunResult
from ..problems import Problem

__all__ = ["MethodRunner", "get_runner", "register_method"]


@dataclass(frozen=True)
class MethodRunner:
    """How to run one method type.

    Attributes:
        run: ``(problems, model, settings, seeds) -> [RunResult per seed]``.
        batched: Run all seeds of a point in one call (GD), or one task per seed (G&C).
        prior_rows: Also store the prior's chance level (``prior_gen_loss``) as rows.
        single_threaded: ``settings -> bool``: a task computes on one thread, so the
            in-process executor may run several at once, one per core (GD on the CPU).
            ``None``: the task may use every core itself (G&C's block threads).
    """

    run: Callable[[Sequence[Problem], FactorizationModel, BaseModel, Sequence[int]], list[RunResult]]
    batched: bool = False
    prior_rows: bool = False
    single_threaded: Callable[[BaseModel], bool] | None = None

    def is_single_threaded(self, settings: BaseModel) -> bool:
        return bool(self.single_threaded is not None and self.single_threaded(settings))


def _run_gnc(problems, model, settings, seeds) -> list[RunResult]:
    optimizer = GuessCheck(eps=settings.eps, sampler=settings.sampler, batch_size=settings.batch_size,
                           device=settings.device, dtype=settings.dtype, progress=False)
    return [optimizer.run(problem, model, settings.samples, seed=seed) for problem, seed in zip(problems, seeds)]


def _run_gd(problems, model, settings, seeds) -> list[RunResult]:
    optimizer = GradientDescent(lr=settings.lr, init_scale=settings.init_scale, step_rule=settings.step_rule,
                                momentum=settings.momentum, device=settings.device, progress=False)
    return optimizer.run_batch(list(problems), model, settings.steps, list(seeds))


_RUNNERS: dict[str, MethodRunner] = {
    "gnc": MethodRunner(_run_gnc, batched=False, prior_rows=True),
    # GradientDescent.run_batch computes a batch on one thread with one intra-op thread on the CPU.
    "gd": MethodRunner(_run_gd, batched=True,
                       single_threaded=lambda settings: resolve_device(settings.device).type == "cpu"),
}


def register_method(type_name: str, runner: MethodRunner) -> None:
    """Register the runner of a method type (its settings class goes to ``register_method_config``)."""
    _RUNNERS[type_name] = runner


def get_runner(type_name: str) -> MethodRunner:
    try:
        return _RUNNERS[type_name]
    except KeyError:
        raise KeyError(f"no runner registered for method type {type_name!r}") from None
