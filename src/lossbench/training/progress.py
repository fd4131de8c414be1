"""Progress display: Rich's bar in a terminal, one plain log line per epoch otherwise."""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, RichProgressBar

from lossbench.errors import LossbenchError

log = logging.getLogger("lossbench")
# where the first training step's time is written (``python -m lossbench.bench --startup``)
FIRST_STEP_FILE = "LOSSBENCH_FIRST_STEP_FILE"


class EpochLog(Callback):
    """Logs the epoch's metrics (``train/loss_epoch``, ``val/*``) and the test metrics."""

    @staticmethod
    def _line(trainer: pl.Trainer, prefixes: tuple[str, ...]) -> str:
        items = sorted(
            (k, float(v)) for k, v in trainer.callback_metrics.items() if k.startswith(prefixes)
        )
        return " ".join(f"{k}={v:.4f}" for k, v in items)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        line = self._line(trainer, ("train/loss_epoch", "val/"))
        log.info("epoch %d/%d: %s", trainer.current_epoch + 1, trainer.max_epochs, line)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        log.info("test: %s", self._line(trainer, ("test/",)))


class FirstStepMarker(Callback):
    """Writes, as the first training batch starts, ``{"time": time.time(), "cpu": s,
    "modules": n, "gc_enabled": b, "gc_frozen": n}`` to ``path``: when the process reached
    its first step (the start-up benchmark reads it), the CPU time it had used, how many
    modules it had imported, and the garbage collector's state (train.py freezes the objects
    of its imports and turns collection back on before training)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.done = False

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if self.done or not trainer.is_global_zero:
            return
        self.done = True
        now, cpu = time.time(), os.times()
        mark = {
            "time": now,
            "cpu": round(cpu.user + cpu.system, 3),
            "modules": len(sys.modules),
            "gc_enabled": gc.isenabled(),
            "gc_frozen": gc.get_freeze_count(),
        }
        with open(self.path, "w") as f:
            json.dump(mark, f)


def first_step_file() -> str | None:
    """The file named by ``LOSSBENCH_FIRST_STEP_FILE``, if set."""
    return os.environ.get(FIRST_STEP_FILE) or None


def progress_callbacks(mode: str) -> tuple[list[Callback], bool]:
    """``(callbacks, enable_progress_bar)`` for ``progress_bar`` = ``auto``, ``rich`` or ``log``."""
    allowed = ("auto", "rich", "log")
    if mode not in allowed:
        raise LossbenchError(
            f"progress_bar={mode!r} is not one of {', '.join(allowed)}; e.g. `progress_bar=log`"
        )
    marker = [FirstStepMarker(path)] if (path := first_step_file()) else []
    if mode == "rich" or (mode == "auto" and sys.stdout.isatty()):
        return [RichProgressBar(leave=True), *marker], True
    return [EpochLog(), *marker], False
