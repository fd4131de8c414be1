"""Categorical losses for the softmax head: mean over the N samples."""

from __future__ import annotations

from torch import nn

from lossbench.errors import LossbenchError, check_range
from lossbench.losses.base import LOSSES, Loss


@LOSSES.register("ce")
class CrossEntropy(Loss, nn.CrossEntropyLoss):
    """``L = -1/N sum_i log softmax(z_i)[y_i]`` on logits ``z`` and class indices ``y``.

    ``torch.nn.CrossEntropyLoss`` (log-sum-exp inside, stable for any logits); Keras'
    ``sparse_categorical_crossentropy``. ``label_smoothing`` ε mixes the target with the
    uniform distribution: ``(1 - ε) onehot(y) + ε / C`` (Szegedy et al. 2016).
    """

    links = ("softmax",)
    consumes = "logits"
    target = "index"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        check_range("loss.label_smoothing", label_smoothing, ge=0, le=1, example=0.1)
        super().__init__(label_smoothing=label_smoothing)


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
