"""Progress display: Rich's bar in a terminal, one plain log line per epoch otherwise."""

from __future__ import annotations

import logging
import sys

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, RichProgressBar

from lossbench.errors import LossbenchError

log = logging.getLogger("lossbench")


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


def progress_callbacks(mode: str) -> tuple[list[Callback], bool]:
    """``(callbacks, enable_progress_bar)`` for ``progress_bar`` = ``auto``, ``rich`` or ``log``."""
    allowed = ("auto", "rich", "log")
    if mode not in allowed:
        raise LossbenchError(
            f"progress_bar={mode!r} is not one of {', '.join(allowed)}; e.g. `progress_bar=log`"
        )
    if mode == "rich" or (mode == "auto" and sys.stdout.isatty()):
        return [RichProgressBar(leave=True)], True
    return [EpochLog()], False
