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
from ..optimizers.guess_check import block_size_for
from ..problems import Problem
from ..samplers import select_sampler

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
    resolved: Callable[[FactorizationModel, BaseModel], dict] | None = None
    work: Callable[[BaseModel], tuple[float, str]] | None = None

    def resolved_settings(self, model: FactorizationModel, settings: BaseModel) -> dict:
        """What the settings resolve to on this machine that changes the numbers (part of the run key).

        Always the device type (CPU and CUDA draw different random numbers), plus the
        method's own (G&C: the sampler ``auto`` picks and the block size).
        """
        device = getattr(settings, "device", None)
        extra = self.resolved(model, settings) if self.resolved is not None else {}
        return {"device_type": resolve_device(device).type if device is not None else "cpu", **extra}

    def work_of(self, settings: BaseModel) -> tuple[float, str]:
        """``(amount, unit)`` of one seed's work, e.g. ``(1e9, "draws")``; ``(1, "runs")`` if unknown."""
        return self.work(settings) if self.work is not None else (1.0, "runs")

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


def _resolved_gnc(model: FactorizationModel, settings) -> dict:
    """The sampler and block size G&C will use: both decide which random numbers make the draws."""
    sampler = select_sampler(model, settings.sampler)
    return {"sampler": sampler.name,
            "block_size": block_size_for(model, sampler, resolve_device(settings.device).type)}


_RUNNERS: dict[str, MethodRunner] = {
    "gnc": MethodRunner(_run_gnc, batched=False, prior_rows=True, resolved=_resolved_gnc,
                        work=lambda settings: (float(settings.samples), "prior draws")),
    # GradientDescent.run_batch computes a batch on one thread with one intra-op thread on the CPU.
    "gd": MethodRunner(_run_gd, batched=True,
                       single_threaded=lambda settings: resolve_device(settings.device).type == "cpu",
                       work=lambda settings: (float(settings.steps), "GD steps")),
}


def register_method(type_name: str, runner: MethodRunner) -> None:
    """Register the runner of a method type (its settings class goes to ``register_method_config``)."""
    _RUNNERS[type_name] = runner


def get_runner(type_name: str) -> MethodRunner:
    try:
        return _RUNNERS[type_name]
    except KeyError:
        raise KeyError(f"no runner registered for method type {type_name!r}") from None
