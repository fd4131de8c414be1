"""Losses: one class per loss, a registry, and ``make_criterion``, the one training entry point."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lossbench.heads import Head, make_head
from lossbench.losses import binary, cross_entropy  # noqa: F401  (registers the losses)
from lossbench.losses.base import LOSSES, Loss

__all__ = ["LOSSES", "Criterion", "Loss", "make_criterion"]


class Criterion(nn.Module):
    """``(logits (N, C), targets) -> scalar``: feeds a loss what it consumes.

    The head turns logits into what the loss takes (logits, probabilities or log-probabilities);
    class-index targets (N,) become one-hot rows when the loss wants binary targets.
    """

    def __init__(self, head: Head, loss: Loss) -> None:
        super().__init__()
        self.head = head
        self.loss = loss

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        inputs = self.head.transform(logits, self.loss.consumes)
        if self.loss.target == "binary":
            if targets.ndim == 1:
                targets = F.one_hot(targets, num_classes=logits.shape[-1])
            targets = targets.to(inputs.dtype)
        return self.loss(inputs, targets)


def make_criterion(head: str | Head, loss: str, **params: object) -> Criterion:
    """The training criterion for a head and a registered loss built with ``params``.

    The pairing is checked by :mod:`lossbench.matrix` before a run; here only the names are.
    """
    head_obj = make_head(head) if isinstance(head, str) else head
    return Criterion(head_obj, LOSSES[loss](**params))
