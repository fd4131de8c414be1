"""Train a group of built runs side by side: one stacked network, one optimizer step for all.

Each member keeps what its sequential run has: its initial weights (built from its seed by
:func:`lossbench.training.run.build`), its data order (its seed's permutation of the shared
in-memory training split), its labels (its own label noise: the inputs are shared, the targets
may differ), its head, criterion, metrics, thresholds and temperature, its best
checkpoint (kept in memory; tested with ``test_on=best``) and its MLflow run, with the same
name, tags, params, metric names and steps as Lightning would log, plus the tag
``fused_group``. The criteria of members that share one (a pair's seeds) are computed in one
vectorised call (:mod:`lossbench.fused.criteria`), each member's loss still its own. The
optimizer and the schedule are the group's; Adam, AdamW and SGD act element
by element, so one step over the stacked parameters is each member's own step. With a constant
lr, members may have their own: the step is taken at lr 1 and each member's change of its
parameters scaled by its lr (exact: these optimizers' state does not depend on the lr, and
their step is proportional to it; at lr 1 the change keeps float32's relative precision).
A member whose loss turns NaN or infinite is recorded FAILED at that step, its loss and
gradients are left out from then on, and the others go on; so is a member that early stopping
(``early_stopping.patience``) stops, which is then tested as its sequential run would be.
Ctrl-C or SIGTERM end every open member KILLED; a fused member is not resumed from a
checkpoint: run the sweep again, and its finished runs are skipped.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lossbench.errors import NonFiniteLoss
from lossbench.fused.criteria import MemberLosses, config_key, criterion_key
from lossbench.fused.stacked import StackedNet
from lossbench.tracking import mlflow_run
from lossbench.training import run
from lossbench.training.run import Job

log = logging.getLogger("lossbench")
GROUP_TAG = "fused_group"


class Terminated(BaseException):
    """SIGTERM during a fused fit (raised by the handler this module installs)."""


@dataclass
class Member:
    """One run of the group and where it stands."""

    job: Job
    index: int
    status: str = "RUNNING"
    reason: str = ""
    best: float | None = None
    best_state: dict[str, Any] | None = None
    waited: int = 0  # early stopping: validations without improvement
    watched: float | None = None  # early stopping: the best value of its monitor
    stopped_state: dict[str, Any] | None = None  # early stopped: the weights it stopped at
    stopped_at: tuple[int, int] | None = None  # early stopped: (epochs, steps) it had trained

    @property
    def alive(self) -> bool:
        return self.status == "RUNNING"

    @property
    def training(self) -> bool:
        return self.alive and self.stopped_state is None


def device_of(trainer: Any) -> torch.device:
    """The one device a fused group trains on: ``trainer.accelerator`` (auto: a GPU if any)."""
    accelerator = str(trainer.accelerator)
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _limit(batches: int, limit: int | float | None) -> int:
    """Lightning's ``limit_*_batches``: all (None), a count (int) or a fraction (float)."""
    if limit is None:
        return batches
    if isinstance(limit, float) and limit <= 1.0:
        return max(1, int(batches * limit)) if limit > 0 else 0
    return min(batches, int(limit))


def fit_group(jobs: list[Job], group: str) -> list[Member]:
    """Open, train, test and record every job of ``jobs`` side by side; return the members
    with their final status (FINISHED, FAILED with its reason). SIGTERM or Ctrl-C: every open
    member is recorded KILLED and ``SystemExit`` (143 or 130) is raised."""
    members = [Member(job, i) for i, job in enumerate(jobs)]
    previous = signal.getsignal(signal.SIGTERM)

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        _fit(members, group)
    except (KeyboardInterrupt, Terminated) as err:
        name = "SIGTERM" if isinstance(err, Terminated) else "SIGINT (Ctrl-C)"
        reason = (f"stopped by {name}; a fused member is not resumed from a checkpoint: run "
                  "the sweep again (its finished runs are skipped)")  # fmt: skip
        for m in members:
            if m.alive:
                _end(m, "KILLED", reason, err)
        ids = ", ".join(m.job.logger.run_id for m in members if m.status == "KILLED")
        print(f"\nlossbench: fused group {group} was {reason.split(';')[0]}; runs {ids} are "
              "KILLED. Run the sweep again to train them anew.", file=sys.stderr)  # fmt: skip
        raise SystemExit(128 + (signal.SIGTERM if name == "SIGTERM" else signal.SIGINT)) from err
    except Exception as err:  # a bug or a broken device: every open member FAILED, with why
        log.exception("fused group %s failed: %s", group, err)
        for m in members:
            if m.alive:
                _end(m, "FAILED", f"{type(err).__name__}: {err}", err)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return members


def _end(m: Member, status: str, reason: str, err: BaseException | None = None) -> None:
    """End member ``m``'s run with ``status`` (its reason as the run's failure tag)."""
    m.status, m.reason = status, reason
    logger = m.job.logger
    try:
        if err is not None:
            mlflow_run.record_failure(logger, err, status, reason=reason)
    finally:
        mlflow_run.end_run(logger, status)


def _fit(members: list[Member], group: str) -> None:
    jobs = [m.job for m in members]
    first = jobs[0]
    cfg, t = first.cfg, first.cfg.trainer
    device = device_of(t)
    if device.type == "cuda" and t.benchmark is not False and not t.deterministic:
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the grouped convs' kernels
    count = len(members)
    data = first.data
    splits = {k: v.to(device) for k, v in data.splits.items()}
    generators = None
    if device.type == "cpu":  # each member's dropout masks from its own RNG state
        generators = [torch.Generator().set_state(j.rng_state) for j in jobs]
    net = StackedNet([j.module.model for j in jobs], generators).to(device)
    for j in jobs:
        j.module.to(device)
    optimizer = _optimizer(first.module.optimizer_factory, net)
    lrs = _member_lrs(jobs, device)
    if lrs is not None:  # the step at lr 1, each member's change then times its own lr
        for param_group in optimizer.param_groups:
            param_group["lr"] = 1.0
    params = list(net.parameters())
    n, batch = len(splits["train"]), data.batch_size
    per_epoch = _limit(math.ceil(n / batch), t.limit_train_batches)
    epochs = t.max_epochs if t.max_epochs is not None else (1000 if t.max_steps == -1 else 10**9)
    total = epochs * per_epoch if t.max_steps == -1 else min(epochs * per_epoch, t.max_steps)
    scheduler = None
    if first.module.scheduler_factory is not None:
        scheduler = first.module.scheduler_factory(optimizer, total, max(1, per_epoch))
    if lrs is not None and scheduler is not None:  # grouping keeps lr in a scheduled key
        raise RuntimeError("members with their own lr under a learning-rate schedule")
    log_every = t.log_every_n_steps or 50
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                if str(t.precision) == "bf16-mixed" else nullcontext())  # fmt: skip
    for j in jobs:  # each run is created with its group's tags (on the first use of run_id)
        j.logger.tags = {**(j.logger.tags or {}), GROUP_TAG: group,
                         mlflow_run.GROUP_SIZE_TAG: str(count)}  # fmt: skip
        log.info("run %s (%s) → %s [fused group %s]", j.name, j.logger.run_id,
                 j.logger.experiment.tracking_uri, group)  # fmt: skip
        run.open_run(j)
        j.clock["fit_start"] = time.perf_counter()
    keys = [criterion_key(j.module.criterion, config_key(j.cfg)) for j in jobs]
    member_losses = MemberLosses([j.module.criterion for j in jobs], keys)
    labels = {k: _member_labels(jobs, k, splits[k], device) for k in splits}
    x_train, y_train = splits["train"].tensors
    rows_of = torch.arange(count, device=device)[:, None]  # member i's row in a (M, B) index
    step, epoch = 0, 0
    dead: list[int] = []
    first_bad = torch.full((count,), -1, device=device)
    step_t = torch.zeros((), dtype=torch.long, device=device)
    alive, dead_known = torch.ones(count, dtype=torch.bool, device=device), 0
    while epoch < epochs and step < total:
        net.train()
        order = torch.stack([torch.randperm(n, generator=j.data.shuffle) for j in jobs])
        order = order.to(device)
        loss_sums = torch.zeros(count, device=device)
        seen = 0
        for b in range(per_epoch):
            if step >= total:
                break
            index = order[:, b * batch : (b + 1) * batch]
            y = y_train[index] if labels["train"] is None else labels["train"][rows_of, index]
            x, y = data.on_after_batch_transfer([x_train[index], y], 0)
            log_now = (step + 1) % log_every == 0
            if log_now and scheduler is not None:
                lr = optimizer.param_groups[0]["lr"]
                for m in members:
                    if m.training:
                        m.job.logger.log_metrics({"train/lr": lr}, step=step)
            with autocast:  # as Lightning's bf16-mixed: the forward pass and the losses
                logits = net(x)
                losses = member_losses(logits, y)  # (M,): one call per distinct criterion
            finite = torch.isfinite(losses.detach())
            if device.type == "cpu":
                for i in (~finite).nonzero().flatten().tolist():
                    if members[i].training:
                        _fail(members[i], step)
                        dead.append(i)
            else:  # the first bad step stays on the device; read when logging
                first_bad = torch.where((first_bad < 0) & ~finite, step_t, first_bad)
                step_t += 1
            if len(dead) != dead_known:  # the mask changes only when a member fails or stops
                alive = torch.tensor([m.training for m in members], device=device)
                dead_known = len(dead)
            total_loss = torch.where(finite & alive, losses, torch.zeros_like(losses)).sum()
            optimizer.zero_grad(set_to_none=True)
            total_loss.backward()
            if dead:
                for p in net.parameters():
                    if p.grad is not None:
                        p.grad.view(count, -1)[dead] = 0
            before = [p.detach().clone() for p in params] if lrs is not None else None
            optimizer.step()
            if before is not None:
                _scale_steps(params, before, lrs)
            if scheduler is not None:
                scheduler.step()
            detached = losses.detach().float()
            rows = len(index[0])
            loss_sums += detached * rows
            seen += rows
            if log_now or b == per_epoch - 1:
                if device.type != "cpu":
                    _collect_bad(members, first_bad, dead)
                if log_now:
                    values = detached.tolist()
                    for i, m in enumerate(members):
                        if m.training:
                            m.job.logger.log_metrics({"train/loss": values[i], "epoch": epoch},
                                                     step=step)  # fmt: skip
            step += 1
        at = step - 1  # Lightning logs epoch-end values at the last step's index
        epoch_losses = (loss_sums / max(seen, 1)).tolist()
        for m in members:
            if m.training:
                m.job.logger.log_metrics({"train/loss_epoch": epoch_losses[m.index],
                                          "epoch": epoch}, step=at)  # fmt: skip
        if (epoch + 1) % (t.check_val_every_n_epoch or 1) == 0:
            dead += _validate(members, net, splits["val"], labels["val"], data, t, epoch, at,
                              autocast)  # fmt: skip
        log.info("fused group %s: epoch %d/%d, %d of %d runs training", group, epoch + 1,
                 epochs, sum(m.training for m in members), count)  # fmt: skip
        epoch += 1
        if not any(m.training for m in members):
            break
    for j in jobs:
        j.clock["fit"] = time.perf_counter()
    _test(members, net, splits["test"], labels["test"], data, t, cfg.test_on, epoch, step,
          autocast)  # fmt: skip


def _member_lrs(jobs: list[Job], device: torch.device) -> Tensor | None:
    """Each member's lr ``(M,)``, where they differ; else None (the optimizer's own lr)."""
    lrs = [j.cfg.optimizer.get("lr") for j in jobs]
    if all(lr == lrs[0] for lr in lrs):
        return None
    return torch.tensor([float(lr) for lr in lrs], device=device)


@torch.no_grad()
def _scale_steps(params: list[Tensor], before: list[Tensor], lrs: Tensor) -> None:
    """Member i's change of each stacked parameter (laid out member by member), taken at lr 1,
    times its lr: p = p₀ + lrᵢ (p − p₀)."""
    for p, p0 in zip(params, before, strict=True):
        change = (p - p0).view(len(lrs), -1).mul_(lrs[:, None])
        p.copy_(p0.add_(change.view_as(p)))


def _member_labels(jobs: list[Job], split: str, shared: Any, device: torch.device) -> Tensor | None:
    """The members' targets of ``split`` stacked ``(M, N, ...)`` where they differ (each member
    its own label noise), on ``device``; None where every member has the first's. Their inputs
    must be the first's (noise changes labels only): a group whose inputs differ is a bug."""
    mine = [j.data.splits[split] for j in jobs]
    if all(m is mine[0] for m in mine):
        return None
    x0 = mine[0].tensors[0]
    seen: set[int] = set()
    for m in mine:
        if id(m) not in seen and not torch.equal(m.tensors[0].to(x0.device), x0):
            raise RuntimeError(f"the fused group's {split} inputs differ between members")
        seen.add(id(m))
    stacked = torch.stack([m.tensors[1].to(device) for m in mine])
    return None if bool((stacked == shared.tensors[1].to(device)).all()) else stacked


def _of(labels: Tensor | None, y: Tensor, m: Member) -> Tensor:
    """Member ``m``'s targets of the rows scored (the first ``len(y)`` of the split)."""
    return y if labels is None else labels[m.index, : len(y)]


def _optimizer(factory: Any, net: StackedNet) -> torch.optim.Optimizer:
    """The group's optimizer over the stacked parameters: torch's fused (one-kernel) variant
    where the config leaves ``fused`` unset. Stacking makes a few large tensors, where the
    per-operation passes of the default implementation cost most: Adam's step over 48 stacked
    MLPs took 91 ms, fused 10 ms, on this project's CPU. The arithmetic is the same."""
    if getattr(factory, "keywords", {}).get("fused") is None:
        try:
            return factory(net.parameters(), fused=True)
        except (TypeError, RuntimeError, ValueError):  # no fused variant here: the default
            pass
    return factory(net.parameters())


def _fail(m: Member, step: int) -> None:
    err = NonFiniteLoss(step)
    _end(m, "FAILED", f"{type(err).__name__}: {err}", err)  # the tag a sequential run gets
    log.error("run %s failed: %s", m.job.name, err)


def _collect_bad(members: list[Member], first_bad: Tensor, dead: list[int]) -> None:
    for i, at in enumerate(first_bad.tolist()):
        if at >= 0 and members[i].training:
            _fail(members[i], at)
            dead.append(i)


@torch.no_grad()
def _logits(
    net: StackedNet, split: Any, data: Any, limit: Any, autocast: Any
) -> tuple[Tensor, Tensor]:
    """Every member's logits ``(M, N, C)`` of a split (in order, ``limit_*_batches`` applied),
    and its targets."""
    n, batch = len(split), data.batch_size
    batches = _limit(math.ceil(n / batch), limit)
    outs, ys = [], []
    for b in range(batches):
        rows = torch.arange(b * batch, min(n, (b + 1) * batch), device=split.tensors[0].device)
        x, y = data.on_after_batch_transfer(split[rows], 0)
        with autocast:
            outs.append(net(x, shared=True))
        ys.append(y)
    return torch.cat(outs, 1), torch.cat(ys)


def _validate(members: list[Member], net: StackedNet, split: Any, labels: Tensor | None,
              data: Any, t: Any, epoch: int, at: int, autocast: Any) -> list[int]:  # fmt: skip
    """Score every training member on validation, keep its best state; return the members that
    early stopping stops now."""
    net.eval()
    logits, shared_y = _logits(net, split, data, t.limit_val_batches, autocast)
    net.train()
    stopped = []
    for m in members:
        if not m.training:
            continue
        module, checkpoint = m.job.module, m.job.checkpoint
        member_logits, y = logits[m.index].float(), _of(labels, shared_y, m)
        # the loss over the whole split: what Lightning's batch-size-weighted mean of the
        # batches' means is, every loss being a mean over samples (and classes)
        values = {"val/loss": float(module.criterion(member_logits, y))}
        values |= {k: float(v) for k, v in module.score("val", member_logits, y).items()}
        m.job.logger.log_metrics({**values, "epoch": epoch}, step=at)
        current = values.get(checkpoint.monitor)
        if current is not None and math.isfinite(current):
            lower = checkpoint.mode == "min"
            if m.best is None or (current < m.best if lower else current > m.best):
                m.best = current
                m.best_state = {"net": net.member_state(m.index), "buffers": _buffers(module)}
        if _stops(m, values):
            m.stopped_state = {"net": net.member_state(m.index), "buffers": _buffers(module)}
            m.stopped_at = epoch + 1, at + 1  # where Lightning's trainer stands when it stops
            log.info("run %s: early stopping after epoch %d", m.job.name, epoch + 1)
            stopped.append(m.index)
    return stopped


def _stops(m: Member, values: dict[str, float]) -> bool:
    """Lightning's ``EarlyStopping`` rule for member ``m`` (its ``early_stopping`` config): stop
    on a non-finite value of the monitor, or after ``patience`` validations in a row that did
    not improve on its best by more than ``min_delta``."""
    stop = m.job.cfg.early_stopping
    current = values.get(stop.monitor)
    if stop.patience is None or current is None:
        return False
    if not math.isfinite(current):
        return True
    if m.watched is None or (current + stop.min_delta < m.watched if stop.mode == "min"
                             else current - stop.min_delta > m.watched):  # fmt: skip
        m.watched, m.waited = current, 0
        return False
    m.waited += 1
    return m.waited >= stop.patience


def _buffers(module: torch.nn.Module) -> dict[str, Tensor | None]:
    return {k: None if getattr(module, k) is None else getattr(module, k).detach().clone()
            for k in ("temperature", "thresholds")}  # fmt: skip


def _test(members: list[Member], net: StackedNet, split: Any, labels: Tensor | None, data: Any,
          t: Any, test_on: str, epoch: int, step: int, autocast: Any) -> None:  # fmt: skip
    alive = [m for m in members if m.alive]
    if not alive:
        return
    for m in alive:  # the best state, or where early stopping stopped it (test_on=last)
        state = m.best_state if test_on == "best" and m.best_state else m.stopped_state
        if state is not None:
            net.load_member(m.index, state["net"])
            for k, v in state["buffers"].items():
                if v is not None:
                    getattr(m.job.module, k).copy_(v)
    net.eval()
    logits, shared_y = _logits(net, split, data, t.limit_test_batches, autocast)
    for m in alive:
        module = m.job.module
        try:
            module.model.load_state_dict(net.member_state(m.index))  # the tested weights
            module.eval()
            member_logits, y = logits[m.index].float(), _of(labels, shared_y, m)
            values = {"test/loss": float(module.criterion(member_logits, y))}
            values |= {k: float(v) for k, v in module.score("test", member_logits, y).items()}
            epochs, steps = m.stopped_at or (epoch, step)
            m.job.logger.log_metrics({**values, "epoch": epochs}, step=steps)
            m.job.clock["test"] = time.perf_counter()
            run.record(m.job, m.best, steps)
            _end(m, "FINISHED", "")
        except Exception as err:
            log.exception("run %s failed while testing: %s", m.job.name, err)
            _end(m, "FAILED", f"{type(err).__name__}: {err}", err)
