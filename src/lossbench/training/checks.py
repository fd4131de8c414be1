"""Checks of a run's config that need its parts built (model, optimizer, schedule) or know the
Trainer's and the run's own keys: each refuses with one message before the run opens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from lossbench.errors import LossbenchError, check_range


def forward_pass(model: torch.nn.Module, shape: Sequence[int], classes: int, name: str) -> None:
    """One forward pass of two zero inputs, so that a model that cannot take the dataset's
    inputs is refused before the run opens."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *shape))
    except Exception as err:
        raise LossbenchError(
            f"model={name} cannot take this dataset's inputs of shape {tuple(shape)} "
            f"({type(err).__name__}: {err}). Fix: another model, or resize the images "
            "(dataset.image_size, model.input_size)"
        ) from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (2, classes):
        raise LossbenchError(f"model={name} gives outputs {tuple(out.shape)}, not (N, {classes})")


def schedule(factory: Any, optimizer: Any, model: torch.nn.Module, epochs: int) -> None:
    """Build the schedule once on a throwaway optimizer (10 steps per epoch), so that its
    parameters are checked before the run opens."""
    factory(optimizer(model.parameters()), 10 * epochs, 10)


def optimizer_factory(node: DictConfig, model: torch.nn.Module) -> Any:
    """The optimizer factory of the config, tried once on the model's parameters so that
    torch's own checks (lr, betas, momentum, ...) refuse a bad value before the run opens."""
    factory = instantiate(node)
    try:
        factory(model.parameters())
    except (ValueError, TypeError, RuntimeError) as err:
        raise LossbenchError(
            f"{node._target_} refused the optimizer config: {err}. Fix: correct that "
            "optimizer.* value"
        ) from None
    return factory


def run_keys(cfg: DictConfig) -> None:
    """Ranges of the run's own keys and the Trainer's numeric arguments that lossbench relies
    on; other Trainer values are checked by Lightning when the Trainer is built."""
    check_range("seed", cfg.seed, ge=0, le=2**32 - 1, example=42)
    if cfg.test_on not in ("best", "last"):
        raise LossbenchError(
            f"test_on={cfg.test_on!r} is not one of best, last. Fix: `test_on=best` (the best "
            "validation checkpoint) or `test_on=last` (the last epoch's weights)"
        )
    stop = cfg.early_stopping
    if stop.patience is not None:
        check_range("early_stopping.patience", stop.patience, ge=1, example=3)
        check_range("early_stopping.min_delta", stop.min_delta, ge=0, example=0.0)
        if stop.mode not in ("min", "max"):
            raise LossbenchError(
                f"early_stopping.mode={stop.mode!r} is not one of min, max. Fix: "
                "`early_stopping.mode=min` for a loss, `max` for a score such as val/acc"
            )
    lr = cfg.optimizer.get("lr")
    if lr is not None:
        check_range("optimizer.lr", lr, gt=0, example=0.001)
    t = cfg.trainer
    if t.max_epochs is not None:
        check_range("trainer.max_epochs", t.max_epochs, ge=1, example=2)
    if t.max_steps != -1 and t.max_steps < 1:
        raise LossbenchError(
            f"trainer.max_steps={t.max_steps} is out of range: it must be >= 1, or -1 for no "
            "limit. Fix: set e.g. `trainer.max_steps=-1`"
        )
    if t.log_every_n_steps is not None:
        check_range("trainer.log_every_n_steps", t.log_every_n_steps, ge=1, example=50)
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        if t[key] is not None and isinstance(t[key], int | float):
            check_range(f"trainer.{key}", t[key], gt=0, example=1.0)
    check_range("trainer.accumulate_grad_batches", t.accumulate_grad_batches, ge=1, example=1)
    if t.check_val_every_n_epoch is not None:
        check_range("trainer.check_val_every_n_epoch", t.check_val_every_n_epoch, ge=1, example=1)
    if isinstance(t.gradient_clip_val, int | float):
        check_range("trainer.gradient_clip_val", t.gradient_clip_val, ge=0, example=1.0)
    check_range("checkpoint.save_top_k", cfg.checkpoint.save_top_k, ge=-1, example=1)
    optimized_metric(cfg.optimized_metric, cfg.checkpoint.monitor)


def optimized_metric(name: str | None, monitor: str) -> None:
    if name and name.endswith("_best") and name != f"{monitor}_best":
        metric = name.removesuffix("_best")
        raise LossbenchError(
            f"optimized_metric={name} is the best value of the checkpoint's monitored metric, "
            f"which is checkpoint.monitor={monitor}, not {metric}; set "
            f"`checkpoint.monitor={metric}` (and checkpoint.mode=max for a score, min for a "
            f"loss), or optimized_metric={monitor}_best"
        )
