"""Lightning's ModelCheckpoint without its per-step cost when it saves only after validation."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint


class Checkpoint(ModelCheckpoint):
    """``ModelCheckpoint`` with the same behaviour and the same ``state_key`` (its checkpoints
    and Lightning's resume one another), minus two costs paid on every training step:

    - Lightning names each callback hook call by ``state_key``, which ``ModelCheckpoint``
      rebuilds each time as the ``repr`` of its settings (six times a step); here it is built
      once, since the settings it holds are fixed at construction.
    - ``on_train_batch_end`` returns at once unless ``every_n_train_steps`` or
      ``train_time_interval`` asks for saving during an epoch (lossbench's default saves after
      validation only), where ``ModelCheckpoint`` first checks the trainer's state.

    And one addition: with ``save_last``, ``last.ckpt`` is written after every validation, not
    only when a top-k checkpoint is (Lightning 2's rule), so that a run killed outright resumes
    from its latest epoch.
    """

    @cached_property
    def state_key(self) -> str:  # type: ignore[override]
        key = ModelCheckpoint.state_key.fget(self)  # type: ignore[attr-defined]
        return "ModelCheckpoint" + key.removeprefix(type(self).__qualname__)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        if self._every_n_train_steps < 1 and self._train_time_interval is None:
            return
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_not_saved(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)  # top-k first: it may save this step
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_not_saved(trainer)

    def _save_last_if_not_saved(self, trainer: pl.Trainer) -> None:
        saved = self._last_global_step_saved == trainer.global_step
        if self.save_last is True and not saved and not trainer.sanity_checking:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
