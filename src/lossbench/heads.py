"""Output heads: how a model's logits become probabilities and predictions.

The model always outputs raw logits ``z`` of shape (N, C). The head is the link function:

* ``softmax``: ``p_c = exp(z_c) / sum_k exp(z_k)``, one distribution over mutually exclusive
  classes; a multi-class prediction is ``argmax_c p_c``.
* ``sigmoid``: ``p_c = 1 / (1 + exp(-z_c))``, C independent Bernoulli probabilities
  (one-vs-all); a multi-class prediction is ``argmax_c p_c``.

On a two-class (single-label) dataset the sigmoid head has one output by default
(``binary_outputs=1``): the model's one logit ``z`` gives ``p(class 1) = sigmoid(z)``, the
binary classifier of Keras' ``Dense(1, "sigmoid")`` + ``binary_crossentropy`` and of PyTorch's
``BCEWithLogitsLoss`` on one logit (the seed tutorial's loss "for a binary classification
problem"). The model's output is then ``(-z, z)``, whose sigmoids ``(1 - sigmoid(z),
sigmoid(z))`` are the two classes' probabilities, so that metrics, calibration and predictions
read it as any two-class output; the loss sees ``z`` alone, and the prediction is class 1 where
``sigmoid(z) >= threshold`` (a number, or ``tuned``: best F1 of class 1 on the validation
split). ``binary_outputs=2``: one sigmoid per class (one-vs-all over both classes), as on any
multi-class set.

A multi-label prediction is ``p_c >= t_c``: one ``threshold`` for all classes, or ``tuned``,
per-class thresholds that maximise F1 on the validation split (set by the training module).
Softmax probabilities sum to one, so a fixed 0.5 would predict at most one label: its default
is ``tuned``. Source: the seed tutorial (softmax for one label, sigmoid + threshold for several).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.errors import LossbenchError
from lossbench.registry import Registry

Task = Literal["multiclass", "multilabel"]
Consumes = Literal["logits", "probs", "log_probs"]
TUNED = "tuned"

HEADS: Registry[type[Head]] = Registry("head")


@dataclass(frozen=True)
class Head:
    """Base head. Subclasses give ``probs`` and ``log_probs``; ``name`` is the config name.

    ``exclusive``: whether the probabilities sum to one (a single distribution over classes).
    """

    name: ClassVar[str] = "head"
    exclusive: ClassVar[bool]
    threshold: float | str = 0.5

    def __post_init__(self) -> None:
        ok = self.threshold == TUNED or (
            isinstance(self.threshold, int | float) and 0.0 < self.threshold < 1.0
        )
        if not ok:
            raise LossbenchError(
                f"head.threshold={self.threshold!r} is neither a probability in (0, 1) nor "
                f"'{TUNED}'; set e.g. `head.threshold=0.5` or `head.threshold={TUNED}`"
            )

    @property
    def tuned(self) -> bool:
        return self.threshold == TUNED

    def one_logit(self, task: Task, num_classes: int) -> bool:
        """Whether the model has one output (a logit z) for this task rather than one per
        class."""
        return False

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

    def predict(
        self, logits: Tensor, task: Task, thresholds: Tensor | None = None, one_logit: bool = False
    ) -> Tensor:
        """Class indices (N,) for a multi-class task; a 0/1 matrix (N, C) for multi-label,
        ``p >= thresholds`` (per class, as tuned) or ``p >= threshold``. A two-class set's one
        logit (``one_logit``): class 1 where its ``p = sigmoid(z) >= threshold`` (or the tuned
        one), as a binary classifier decides."""
        if task == "multiclass" and not one_logit:
            return logits.argmax(dim=-1)
        if thresholds is None:
            if self.tuned:
                raise ValueError("head.threshold=tuned needs the tuned thresholds")
            thresholds = torch.tensor(self.threshold)
        p = self.probs(logits)[:, 1:] if one_logit else self.probs(logits)
        decided = (p >= thresholds.to(logits.device)).long()
        return decided[:, 0] if one_logit else decided


@HEADS.register("softmax")
@dataclass(frozen=True)
class SoftmaxHead(Head):
    """``p = softmax(z)``: one distribution over mutually exclusive classes."""

    name: ClassVar[str] = "softmax"
    exclusive: ClassVar[bool] = True
    threshold: float | str = TUNED

    def probs(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=-1)

    def log_probs(self, logits: Tensor) -> Tensor:
        return F.log_softmax(logits, dim=-1)


@HEADS.register("sigmoid")
@dataclass(frozen=True)
class SigmoidHead(Head):
    """``p_c = sigmoid(z_c)``: independent per-class probabilities."""

    name: ClassVar[str] = "sigmoid"
    exclusive: ClassVar[bool] = False
    binary_outputs: int = 1  # a two-class set: one logit (1) or one per class (2)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.binary_outputs not in (1, 2) or isinstance(self.binary_outputs, bool):
            raise LossbenchError(
                f"head.binary_outputs={self.binary_outputs!r} is neither 1 (a two-class set's "
                "one logit, p = sigmoid(z)) nor 2 (one sigmoid per class). Fix: set "
                "`head.binary_outputs=1` or `head.binary_outputs=2`"
            )

    def one_logit(self, task: Task, num_classes: int) -> bool:
        return self.binary_outputs == 1 and task == "multiclass" and num_classes == 2

    def probs(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)

    def log_probs(self, logits: Tensor) -> Tensor:
        return F.logsigmoid(logits)


def make_head(name: str, **params: float | str) -> Head:
    """The head registered under ``name``, built with its config parameters."""
    return HEADS[name](**params)
