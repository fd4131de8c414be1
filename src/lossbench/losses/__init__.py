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

    ``one_logit`` (a two-class set's one-output sigmoid head, whose model outputs ``(-z, z)``):
    the loss gets ``z`` (N, 1) and the class index as a 0/1 column, the one-output binary loss
    as its source states it (``alpha``, ``pos_weight``, ``gamma_pos`` weigh class 1).
    """

    def __init__(self, head: Head, loss: Loss, one_logit: bool = False) -> None:
        super().__init__()
        self.head = head
        self.loss = loss
        self.one_logit = one_logit

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
        if self.one_logit:
            return self.loss(inputs[:, 1:], targets[:, None].to(inputs.dtype))
        return self.loss(inputs, self.targets(targets, logits.shape[-1], inputs.dtype))


def make_criterion(
    head: str | Head,
    loss: str,
    class_counts: Tensor | None = None,
    task: str = "multiclass",
    one_logit: bool = False,
    **params: object,
) -> Criterion:
    """The training criterion for a head and a registered loss (or alias) built with ``params``
    (the loss's variant for that head); ``class_counts``: the training split's, for a
    class-balanced loss; ``one_logit``: the model has one output (:class:`Criterion`).

    The pairing is checked by :mod:`lossbench.matrix` before a run; here only the names are.
    """
    head_obj = make_head(head) if isinstance(head, str) else head
    loss_obj = LOSSES[loss].for_head(head_obj.name)(**params)
    if class_counts is not None and hasattr(loss_obj, "set_class_counts"):
        loss_obj.set_class_counts(class_counts, task)
    elif getattr(loss_obj, "class_weight", "none") != "none":
        raise LossbenchError(f"loss.class_weight={loss_obj.class_weight} needs the class counts")
    pos_weight = getattr(loss_obj, "pos_weight", None)
    outputs = 1 if one_logit else None if class_counts is None else len(class_counts)
    if pos_weight is not None and outputs is not None and pos_weight.numel() not in (1, outputs):
        raise LossbenchError(
            f"loss.pos_weight has {pos_weight.numel()} values, but the {head_obj.name} head has "
            f"{outputs} output{'s' if outputs > 1 else ''} here"
            + (" (one logit for the two classes: its weight is class 1's)" if one_logit else "")
            + ". Fix: give one number, e.g. `loss.pos_weight=2.0`"
            + (f", or {outputs} (one per class)" if outputs > 1 else "")
        )
    return Criterion(head_obj, loss_obj, one_logit)
