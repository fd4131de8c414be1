"""The LightningModule: model → logits → criterion for the loss, head → predictions → metrics."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lossbench.errors import NonFiniteLoss
from lossbench.heads import Head, Task
from lossbench.losses import Criterion
from lossbench.training import calibration
from lossbench.training.metrics import (
    binary_scores,
    make_confusion,
    make_metrics,
    make_score_metrics,
    ranking_scores,
    tune_thresholds,
)

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer, int, int], LRScheduler | None]  # (opt, steps, per epoch)


class Classifier(pl.LightningModule):
    """Logs ``train/loss`` every ``trainer.log_every_n_steps`` steps and ``train/loss_epoch``
    (a running sum on the device); ``{val,test}/loss`` and metrics per epoch.

    ``self.log`` costs tens of microseconds of Python per call, a large share of an MLP step
    on a CPU: the step loss is handed to Lightning only on the steps its logger writes.

    Evaluation keeps the split's logits (small: N × C) and scores them at the epoch's end, so
    that ``head.threshold=tuned`` can first choose per-class thresholds on the validation split.
    The thresholds are a buffer: the checkpoint used for testing carries its own. A multi-class
    test also leaves its confusion matrix in ``test_confusion``.
    """

    def __init__(
        self,
        model: nn.Module,
        head: Head,
        criterion: Criterion,
        task: Task,
        num_classes: int,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.head = head
        self.criterion = criterion
        self.task = task
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.metrics = nn.ModuleDict(
            {s: make_metrics(task, num_classes, f"{s}/") for s in ("val", "test")}
        )
        self.score_metrics = nn.ModuleDict(
            {s: make_score_metrics(task, num_classes, f"{s}/") for s in ("val", "test")}
        )
        self.confusion = make_confusion(task, num_classes)
        self.test_confusion: Tensor | None = None  # of the last test epoch, rows: true class
        self.test_reliability: dict | None = None  # reliability-diagram bins of the last test
        # the epoch's sum of loss × batch size, on the device, and its sample count
        self.register_buffer("_loss_sum", torch.zeros(()), persistent=False)
        self._loss_count = 0
        self.register_buffer("_first_nonfinite", torch.tensor(-1), persistent=False)
        self.thresholds: Tensor | None
        self.one_logit = criterion.one_logit  # a two-class set's sigmoid head: p >= threshold
        tuned = head.tuned and (task == "multilabel" or self.one_logit)
        size = 1 if self.one_logit else num_classes  # one logit: class 1's threshold
        self.register_buffer("thresholds", torch.full((size,), 0.5) if tuned else None)
        # fitted on each validation (temperature scaling); the tested checkpoint carries its own
        self.register_buffer("temperature", torch.ones(()))
        self._outputs: list[tuple[Tensor, Tensor]] = []

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = self.criterion(self(x), y)
        self._check_finite(loss)
        self._loss_sum.add_(loss.detach(), alpha=len(y))  # in place: one op, no host sync
        self._loss_count += len(y)
        if self.trainer._logger_connector.should_update_logs:  # Lightning's own "log now"
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        if batch_idx + 1 == self.trainer.num_training_batches:  # the epoch's last batch
            self.log(
                "train/loss_epoch", self._loss_sum / self._loss_count, on_step=False,
                on_epoch=True, sync_dist=True,
            )  # fmt: skip
            self._loss_sum.zero_()
            self._loss_count = 0
        return loss

    def _check_finite(self, loss: Tensor) -> None:
        """Stop at a NaN/inf loss, before its backward pass. On a CPU the check is free and done
        every step; on an accelerator the first bad step is kept on the device and read on the
        steps Lightning logs anyway, to avoid a host sync per step."""
        if loss.device.type == "cpu":
            if not math.isfinite(loss.item()):  # a float read: cheaper than torch.isfinite
                raise NonFiniteLoss(self.global_step)
            return
        bad = ~torch.isfinite(loss)
        step = torch.full_like(self._first_nonfinite, self.global_step)
        first_bad = bad & (self._first_nonfinite < 0)
        self._first_nonfinite.copy_(torch.where(first_bad, step, self._first_nonfinite))
        if self.trainer._logger_connector.should_update_logs and self._first_nonfinite >= 0:
            raise NonFiniteLoss(int(self._first_nonfinite))

    def _evaluate(self, batch: list[Tensor], stage: str) -> None:
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True)
        self._outputs.append((logits.detach(), y))

    def _score(self, stage: str) -> None:
        logits, y = (torch.cat(t) for t in zip(*self._outputs, strict=True))
        self._outputs.clear()
        values = self.score(stage, logits, y)
        shown = set(self.metrics[stage].keys()) if stage == "val" else set()
        self.log_dict({k: v for k, v in values.items() if k in shown}, prog_bar=True)
        self.log_dict({k: v for k, v in values.items() if k not in shown})

    def score(self, stage: str, logits: Tensor, y: Tensor) -> dict[str, Tensor]:
        """The split's scores from its logits (N, C) and targets, under ``<stage>/`` names.

        On the validation split first tunes the thresholds (``head.threshold=tuned``) and fits
        the temperature; on the test split also keeps the confusion matrix and the
        reliability-diagram bins. The fused launcher scores its members with this too.
        """
        if stage == "val" and self.thresholds is not None:
            if self.one_logit:  # class 1's probability and 0/1 column
                self.thresholds.copy_(tune_thresholds(self.head.probs(logits)[:, 1:], y[:, None]))
            else:
                self.thresholds.copy_(tune_thresholds(self.head.probs(logits), y))
        if stage == "val":
            self.temperature.fill_(calibration.fit_temperature(self.head, logits, y, self.task))
        metrics, scores = self.metrics[stage], self.score_metrics[stage]
        predictions = self.head.predict(logits, self.task, self.thresholds, self.one_logit)
        metrics.update(predictions, y.long())
        values = dict(metrics.compute())
        metrics.reset()
        if stage == "test" and self.confusion is not None:  # computed on every rank (DDP sync)
            self.confusion.update(predictions, y.long())
            self.test_confusion = self.confusion.compute().cpu()
            self.confusion.reset()
        if len(scores):
            scores.update(self.head.probs(logits), y.long())
            values |= scores.compute()
            scores.reset()
        comparable = calibration.scores(self.head, logits, y, self.task, float(self.temperature))
        if stage == "test":
            self.test_reliability = calibration.reliability(self.head, logits, y, self.task)
        if self.task == "multilabel":
            comparable |= ranking_scores(self.head.probs(logits), y, predictions)
        elif logits.shape[1] == 2:  # a two-class set: AUROC and AP of the second class
            comparable |= binary_scores(calibration.distribution(self.head, logits)[:, 1], y)
        return values | {f"{stage}/{k}": v for k, v in comparable.items()}

    def validation_step(self, batch: list[Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._score("val")

    def test_step(self, batch: list[Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._score("test")

    def configure_optimizers(self) -> Optimizer | dict:
        """The optimizer, and the scheduler stepped after every optimizer step (its lr is
        logged as ``train/lr`` by a LearningRateMonitor)."""
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, math.ceil(total / max(1, self.trainer.max_epochs or 1)))
        scheduler = self.scheduler_factory(optimizer, total, per_epoch)
        if scheduler is None:
            return optimizer
        schedule = {"scheduler": scheduler, "interval": "step", "name": "train/lr"}
        return {"optimizer": optimizer, "lr_scheduler": schedule}
