"""The metric set per task (torchmetrics), under the names the MLflow runs use, and the
per-class threshold tuning for ``head.threshold=tuned``."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MultilabelAccuracy,
    MultilabelAveragePrecision,
    MultilabelExactMatch,
    MultilabelF1Score,
)
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    multilabel_ranking_average_precision,
    multilabel_ranking_loss,
)

from lossbench.heads import Task


def make_metrics(task: Task, num_classes: int, prefix: str) -> MetricCollection:
    """Metrics of hard predictions behind ``prefix``: ``acc``, ``f1_macro``, ``f1_micro``, and for
    multi-label ``hamming_acc``.

    Multi-label ``acc`` is exact-match (subset) accuracy; ``hamming_acc`` is the fraction of
    correct (sample, class) decisions.
    """
    if task == "multiclass":
        metrics: dict[str, Metric] = {
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


def make_score_metrics(task: Task, num_classes: int, prefix: str) -> MetricCollection:
    """Threshold-free metrics of probabilities: multi-label ``map`` (macro average precision)."""
    metrics = {"map": MultilabelAveragePrecision(num_classes, average="macro")}
    return MetricCollection(metrics if task == "multilabel" else {}, prefix=prefix)


def ranking_scores(probs: Tensor, y: Tensor, predictions: Tensor) -> dict[str, Tensor]:
    """The multi-label literature's ranking scores (Tsoumakas et al. 2010, "Mining Multi-label
    Data"; Zhang & Zhou 2014): ``ranking_loss`` and ``lrap`` (label-ranking average precision;
    torchmetrics, as scikit-learn defines them), ``one_error`` (the share of samples with a
    label whose top-ranked class is not one of them) and ``f1_samples`` (F1 per sample, averaged;
    scikit-learn's ``average="samples"``, a sample without labels or predictions scoring 1)."""
    from sklearn.metrics import f1_score  # multi-label runs only: sklearn stays off the others

    y = y.long()
    labelled = y.sum(1) > 0
    top = probs.argmax(1)
    one_error = (y[labelled].gather(1, top[labelled][:, None]) == 0).float().mean()
    f1 = f1_score(y.cpu().numpy(), predictions.cpu().numpy(), average="samples", zero_division=1.0)
    return {
        "ranking_loss": multilabel_ranking_loss(probs, y, y.shape[1]),
        "lrap": multilabel_ranking_average_precision(probs, y, y.shape[1]),
        "one_error": one_error,
        "f1_samples": torch.tensor(float(f1)),
    }


def binary_scores(p: Tensor, y: Tensor) -> dict[str, Tensor]:
    """A two-class set's threshold-free scores of ``p``, each sample's probability of the second
    class: ``auroc``, the area under the ROC curve (Fawcett 2006, "An introduction to ROC
    analysis"), and ``ap``, average precision ``sum_n (R_n - R_{n-1}) P_n`` over the precision-
    recall curve's thresholds (torchmetrics, as scikit-learn's ``average_precision_score``)."""
    y = y.long()
    return {"auroc": binary_auroc(p, y), "ap": binary_average_precision(p, y)}


def make_confusion(task: Task, num_classes: int) -> MulticlassConfusionMatrix | None:
    """Counts of (true class, predicted class) for a multi-class task; None for multi-label."""
    return MulticlassConfusionMatrix(num_classes) if task == "multiclass" else None


def tune_thresholds(probs: Tensor, targets: Tensor, default: float = 0.5) -> Tensor:
    """Per class c, the threshold t maximising F1 of ``p_c >= t`` on these samples.

    Candidates are the scores themselves (``sklearn.metrics.precision_recall_curve``). A class
    with no positive sample keeps ``default``.
    """
    from sklearn.metrics import precision_recall_curve  # head.threshold=tuned only

    p, y = probs.detach().float().cpu().numpy(), targets.detach().cpu().numpy()
    out = np.full(p.shape[1], default, dtype=np.float32)
    for c in range(p.shape[1]):
        if y[:, c].sum() == 0:
            continue
        precision, recall, thresholds = precision_recall_curve(y[:, c], p[:, c])
        denom = precision[:-1] + recall[:-1]
        f1 = np.divide(
            2 * precision[:-1] * recall[:-1], denom, out=np.zeros_like(denom), where=denom > 0
        )
        out[c] = thresholds[int(np.argmax(f1))]
    return torch.from_numpy(out)
