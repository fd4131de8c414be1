"""Learning-rate schedules (config group ``scheduler``), stepped after every optimizer step.

Each option is a function of the optimizer, the run's total number of optimizer steps and the
steps per epoch (Lightning's ``estimated_stepping_batches``), returning a ``torch.optim``
scheduler, or None for a constant learning rate. The rate is logged per step as ``train/lr``
(Lightning's ``LearningRateMonitor``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    SequentialLR,
)

from lossbench.errors import LossbenchError, check_range
from lossbench.registry import Registry

SCHEDULERS: Registry = Registry("scheduler")


@SCHEDULERS.register("none")
def none(optimizer: Optimizer, total_steps: int, steps_per_epoch: int) -> None:
    """A constant learning rate (the default)."""
    return None


@SCHEDULERS.register("cosine")
def cosine(
    optimizer: Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    min_lr: float = 0.0,
) -> LRScheduler:
    """Cosine annealing (Loshchilov & Hutter 2017, without restarts) from the optimizer's lr to
    ``min_lr`` over the run, after a linear warm-up from lr/1000 over ``warmup_epochs``
    (Goyal et al. 2017)."""
    check_range("scheduler.warmup_epochs", warmup_epochs, ge=0, example=0)
    check_range("scheduler.min_lr", min_lr, ge=0, example=0.0)
    warmup = round(warmup_epochs * steps_per_epoch)
    if warmup >= total_steps:
        raise LossbenchError(
            f"scheduler.warmup_epochs={warmup_epochs} is {warmup} steps, the whole run "
            f"({total_steps} steps). Fix: fewer warm-up epochs, or more trainer.max_epochs"
        )
    anneal = CosineAnnealingLR(optimizer, T_max=total_steps - warmup, eta_min=min_lr)
    if not warmup:
        return anneal
    ramp = LinearLR(optimizer, start_factor=1e-3, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, anneal], milestones=[warmup])


@SCHEDULERS.register("step")
def step(
    optimizer: Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    milestones: Sequence[int] = (30, 60),
    gamma: float = 0.1,
) -> LRScheduler:
    """The lr times ``gamma`` at each of the ``milestones`` (epochs): the step schedule of
    He et al. 2016."""
    for epoch in milestones:
        check_range("scheduler.milestones", epoch, ge=1, example="[30,60]")
    check_range("scheduler.gamma", gamma, gt=0, le=1, example=0.1)
    return MultiStepLR(optimizer, [m * steps_per_epoch for m in milestones], gamma=gamma)


@SCHEDULERS.register("onecycle")
def onecycle(
    optimizer: Optimizer,
    total_steps: int,
    steps_per_epoch: int,
    max_lr: float | None = None,
    pct_start: float = 0.3,
) -> LRScheduler:
    """The 1cycle policy (Smith & Topin 2019), ``torch.optim.lr_scheduler.OneCycleLR``: up to
    ``max_lr`` (null: the optimizer's lr) over ``pct_start`` of the run, then down."""
    check_range("scheduler.pct_start", pct_start, gt=0, lt=1, example=0.3)
    peak = max_lr if max_lr is not None else optimizer.param_groups[0]["lr"]
    check_range("scheduler.max_lr", peak, gt=0, example=0.1)
    return OneCycleLR(optimizer, max_lr=peak, total_steps=total_steps, pct_start=pct_start)
