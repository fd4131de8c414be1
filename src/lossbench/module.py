"""The LightningModule: model → logits → criterion for the loss, head → predictions → metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytorch_lightning as pl
from torch import Tensor, nn
from torch.optim import Optimizer

from lossbench.heads import Head, Task
from lossbench.losses import Criterion
from lossbench.metrics import make_metrics

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]


class Classifier(pl.LightningModule):
    """Logs ``train/loss`` per step and ``train/loss_epoch``; ``{val,test}/loss`` and metrics."""

    def __init__(
        self,
        model: nn.Module,
        head: Head,
        criterion: Criterion,
        task: Task,
        num_classes: int,
        optimizer: OptimizerFactory,
    ) -> None:
        super().__init__()
        self.model = model
        self.head = head
        self.criterion = criterion
        self.task = task
        self.optimizer_factory = optimizer
        self.val_metrics = make_metrics(task, num_classes, prefix="val/")
        self.test_metrics = make_metrics(task, num_classes, prefix="test/")

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = self.criterion(self(x), y)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: list[Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(self.head.predict(logits, self.task), y.long())
        self.log(f"{stage}/loss", self.criterion(logits, y), prog_bar=stage == "val")
        self.log_dict(metrics, prog_bar=stage == "val")

    def validation_step(self, batch: list[Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: list[Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> Optimizer:
        return self.optimizer_factory(self.parameters())
