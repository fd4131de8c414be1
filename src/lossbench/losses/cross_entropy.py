"""Categorical losses for the softmax head: mean over the N samples."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lossbench.errors import LossbenchError, check_range
from lossbench.losses.base import LOSSES, Loss
from lossbench.losses.weights import ClassWeighted


@LOSSES.register("ce")
class CrossEntropy(Loss, ClassWeighted, nn.CrossEntropyLoss):
    """``L = -1/N sum_i w_{y_i} log softmax(z_i)[y_i]`` on logits ``z`` and class indices ``y``.

    ``torch.nn.CrossEntropyLoss`` (log-sum-exp inside, stable for any logits); Keras'
    ``sparse_categorical_crossentropy``. ``label_smoothing`` ε mixes the target with the
    uniform distribution: ``(1 - ε) onehot(y) + ε / C`` (Szegedy et al. 2016). ``w`` = 1, or
    the class-balanced weights of ``class_weight`` (:mod:`lossbench.losses.weights`).
    """

    links = ("softmax",)
    consumes = "logits"
    target = "index"

    def __init__(
        self, label_smoothing: float = 0.0, class_weight: str = "none", beta: float = 0.999
    ) -> None:
        check_range("loss.label_smoothing", label_smoothing, ge=0, le=1, example=0.1)
        super().__init__(label_smoothing=label_smoothing)
        self._init_weighting(class_weight, beta)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        weights = self.sample_weights(target)
        if weights is None:
            return super().forward(logits, target)
        per = F.cross_entropy(logits, target, reduction="none",
                              label_smoothing=self.label_smoothing)  # fmt: skip
        return self.weighted_mean(per, weights)


@LOSSES.register("ce_onehot")
class CrossEntropyOneHot(Loss, nn.CrossEntropyLoss):
    """``L = -1/N sum_i sum_c t_ic log softmax(z_i)_c`` with target rows ``t_i`` summing to 1.

    ``torch.nn.CrossEntropyLoss`` with probability targets; Keras' ``categorical_crossentropy``.
    Multi-class: ``t`` is one-hot. Multi-label: the multi-hot row divided by its number of
    labels (the softmax baseline of Mahajan et al. 2018, "Exploring the Limits of Weakly
    Supervised Pretraining"); a row without labels contributes 0.
    """

    links = ("softmax",)
    consumes = "logits"
    target = "distribution"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        check_range("loss.label_smoothing", label_smoothing, ge=0, le=1, example=0.1)
        super().__init__(label_smoothing=label_smoothing)


@LOSSES.register("nll")
class NegativeLogLikelihood(Loss, nn.NLLLoss):
    """``L = -1/N sum_i l_i[y_i]`` on log-probabilities ``l = log_softmax(z)``.

    ``torch.nn.NLLLoss``; with ``log_softmax`` in front it equals ``ce``.
    """

    links = ("softmax",)
    consumes = "log_probs"
    target = "index"

    def __init__(self) -> None:
        super().__init__()


@LOSSES.register("hinge")
class MultiClassHinge(Loss, nn.MultiMarginLoss):
    """``L = 1/N sum_i 1/C sum_{c != y_i} max(0, margin - z_iy_i + z_ic)^p``: the multi-class
    hinge of Weston & Watkins (1999), ``torch.nn.MultiMarginLoss`` (``p``, ``margin``).
    Logits act as scores, not probabilities; it goes with the single-label (softmax) head,
    whose argmax predicts.
    """

    links = ("softmax",)
    consumes = "logits"
    target = "index"

    def __init__(self, p: int = 1, margin: float = 1.0) -> None:
        if p not in (1, 2):
            raise LossbenchError(f"loss.p={p} is out of range: it must be 1 or 2. Fix: `loss.p=1`")
        check_range("loss.margin", margin, gt=0, example=1.0)
        super().__init__(p=p, margin=margin)


class SoftmaxFocal(Loss, ClassWeighted):
    """Multi-class focal loss (Lin et al. 2017, Eq. 4 with p_t the true class's softmax
    probability; as Mukhoti et al. 2020, "Calibrating Deep Neural Networks using Focal Loss",
    use it): ``L = -1/N sum_i w_{y_i} (1 - p_{i,y_i})^gamma log p_{i,y_i}``, with ``log p`` from
    ``log_softmax`` (stable). ``alpha`` balances positives against negatives, which exist for
    the sigmoid head only: here it must stay -1 (use ``class_weight`` to weigh classes).
    """

    links = ("softmax",)
    consumes = "logits"
    target = "index"

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float = -1.0,
        class_weight: str = "none",
        beta: float = 0.999,
    ) -> None:
        super().__init__()
        check_range("loss.gamma", gamma, ge=0, example=2.0)
        if alpha != -1:
            raise LossbenchError(
                f"loss.alpha={alpha} weighs positives against negatives of the sigmoid focal "
                "loss; the softmax head has one distribution and no such terms. Fix: "
                "`loss.alpha=-1`, and `loss.class_weight=...` to weigh classes"
            )
        self.gamma = gamma
        self._init_weighting(class_weight, beta)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        log_p = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        per = -((1 - log_p.exp()) ** self.gamma) * log_p
        return self.weighted_mean(per, self.sample_weights(target))
