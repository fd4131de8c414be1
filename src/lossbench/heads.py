"""Output heads: how a model's logits become probabilities and predictions.

The model always outputs raw logits ``z`` of shape (N, C). The head is the link function:

* ``softmax``: ``p_c = exp(z_c) / sum_k exp(z_k)``, one distribution over mutually exclusive
  classes; the prediction is ``argmax_c p_c``.
* ``sigmoid``: ``p_c = 1 / (1 + exp(-z_c))``, C independent Bernoulli probabilities
  (one-vs-all); a multi-label prediction is ``p_c > threshold``, a multi-class one
  ``argmax_c p_c``.

Source: the seed tutorial (softmax for one label, sigmoid + threshold for several).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.errors import LossbenchError
from lossbench.registry import Registry

Task = Literal["multiclass", "multilabel"]
Consumes = Literal["logits", "probs", "log_probs"]

HEADS: Registry[type[Head]] = Registry("head")


@dataclass(frozen=True)
class Head:
    """Base head. Subclasses give ``probs`` and ``log_probs``; ``name`` is the config name."""

    name = "head"

    def probs(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def log_probs(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def transform(self, logits: Tensor, consumes: Consumes) -> Tensor:
        """What a loss consumes, computed from logits: themselves, probabilities or log-probs."""
        if consumes == "logits":
            return logits
        if consumes == "probs":
            return self.probs(logits)
        return self.log_probs(logits)

    def predict(self, logits: Tensor, task: Task) -> Tensor:
        """Class indices (N,) for a multi-class task, a 0/1 matrix (N, C) for multi-label."""
        if task == "multiclass":
            return logits.argmax(dim=-1)
        raise NotImplementedError(f"head {self.name!r} does not predict {task} targets")


@HEADS.register("softmax")
@dataclass(frozen=True)
class SoftmaxHead(Head):
    """``p = softmax(z)``: one distribution over mutually exclusive classes."""

    name = "softmax"

    def probs(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=-1)

    def log_probs(self, logits: Tensor) -> Tensor:
        return F.log_softmax(logits, dim=-1)


@HEADS.register("sigmoid")
@dataclass(frozen=True)
class SigmoidHead(Head):
    """``p_c = sigmoid(z_c)``: independent per-class probabilities, thresholded for multi-label."""

    name = "sigmoid"
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise LossbenchError(
                f"head.threshold={self.threshold} is outside (0, 1); "
                "set a probability such as `head.threshold=0.5`"
            )

    def probs(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)

    def log_probs(self, logits: Tensor) -> Tensor:
        return F.logsigmoid(logits)

    def predict(self, logits: Tensor, task: Task) -> Tensor:
        if task == "multilabel":
            return (self.probs(logits) > self.threshold).long()
        return super().predict(logits, task)


def make_head(name: str, **params: float) -> Head:
    """The head registered under ``name``, built with its config parameters."""
    return HEADS[name](**params)
