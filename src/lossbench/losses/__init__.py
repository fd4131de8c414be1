"""Losses: one class per loss, a registry, and ``make_criterion``, the one training entry point."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossbench.errors import LossbenchError
from lossbench.heads import Head, make_head
from lossbench.losses import (  # noqa: F401  (registers the losses)
    binary,
    cross_entropy,
    robust,
    squared,
)
from lossbench.losses.base import LOSSES, Loss

__all__ = ["LOSSES", "Criterion", "Loss", "make_criterion"]

# Keras' names for the same losses.
LOSSES.alias("sparse_categorical_crossentropy", "ce")
LOSSES.alias("categorical_crossentropy", "ce_onehot")
LOSSES.alias("binary_crossentropy", "bce")


class Criterion(nn.Module):
    """``(logits (N, C), targets) -> scalar``: feeds a loss what it consumes.

    The head turns logits into what the loss takes (logits, probabilities or log-probabilities);
    targets become the loss's form: class indices (N,) stay, or become one-hot rows; multi-hot
    rows (N, C) stay binary, or are divided by their label count for a ``distribution`` loss.
    """

    def __init__(self, head: Head, loss: Loss) -> None:
        super().__init__()
        self.head = head
        self.loss = loss

    def targets(self, targets: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
        if self.loss.target == "index":
            return targets
        rows = F.one_hot(targets, num_classes) if targets.ndim == 1 else targets
        rows = rows.to(dtype)
        if self.loss.target == "distribution":
            rows = rows / rows.sum(dim=1, keepdim=True).clamp(min=1)
        return rows

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        inputs = self.head.transform(logits, self.loss.consumes)
        return self.loss(inputs, self.targets(targets, logits.shape[-1], inputs.dtype))


def make_criterion(
    head: str | Head,
    loss: str,
    class_counts: Tensor | None = None,
    task: str = "multiclass",
    **params: object,
) -> Criterion:
    """The training criterion for a head and a registered loss (or alias) built with ``params``
    (the loss's variant for that head); ``class_counts``: the training split's, for a
    class-balanced loss.

    The pairing is checked by :mod:`lossbench.matrix` before a run; here only the names are.
    """
    head_obj = make_head(head) if isinstance(head, str) else head
    loss_obj = LOSSES[loss].for_head(head_obj.name)(**params)
    if class_counts is not None and hasattr(loss_obj, "set_class_counts"):
        loss_obj.set_class_counts(class_counts, task)
    elif getattr(loss_obj, "class_weight", "none") != "none":
        raise LossbenchError(f"loss.class_weight={loss_obj.class_weight} needs the class counts")
    return Criterion(head_obj, loss_obj)
