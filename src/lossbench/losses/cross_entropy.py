"""Categorical losses for the softmax head: mean over the N samples."""

from __future__ import annotations

from torch import nn

from lossbench.losses.base import LOSSES, Loss


@LOSSES.register("ce")
class CrossEntropy(Loss, nn.CrossEntropyLoss):
    """``L = -1/N sum_i log softmax(z_i)[y_i]`` on logits ``z`` and class indices ``y``.

    ``torch.nn.CrossEntropyLoss`` (log-sum-exp inside, so stable for any logits); Keras'
    ``sparse_categorical_crossentropy``.
    """

    link = "softmax"
    consumes = "logits"
    target = "index"


@LOSSES.register("nll")
class NegativeLogLikelihood(Loss, nn.NLLLoss):
    """``L = -1/N sum_i l_i[y_i]`` on log-probabilities ``l = log_softmax(z)``.

    ``torch.nn.NLLLoss``; with ``log_softmax`` in front it equals ``ce``.
    """

    link = "softmax"
    consumes = "log_probs"
    target = "index"
