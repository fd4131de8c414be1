"""The metric set per task (torchmetrics), under the names the MLflow runs use."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MultilabelAccuracy,
    MultilabelExactMatch,
    MultilabelF1Score,
)

from lossbench.heads import Task


def make_metrics(task: Task, num_classes: int, prefix: str) -> MetricCollection:
    """``acc``, ``f1_macro``, ``f1_micro`` (+ ``hamming_acc`` for multi-label) behind ``prefix``.

    Multi-label ``acc`` is exact-match (subset) accuracy; ``hamming_acc`` is the fraction of
    correct (sample, class) decisions. Metrics take the head's hard predictions.
    """
    if task == "multiclass":
        metrics = {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
            "f1_micro": MulticlassF1Score(num_classes, average="micro"),
        }
    else:
        metrics = {
            "acc": MultilabelExactMatch(num_classes),
            "hamming_acc": MultilabelAccuracy(num_classes, average="micro"),
            "f1_macro": MultilabelF1Score(num_classes, average="macro"),
            "f1_micro": MultilabelF1Score(num_classes, average="micro"),
        }
    return MetricCollection(metrics, prefix=prefix)
