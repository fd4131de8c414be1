"""Binary (one-vs-all) losses for the sigmoid head: mean over N samples and C classes."""

from __future__ import annotations

from torch import nn

from lossbench.losses.base import LOSSES, Loss


@LOSSES.register("bce")
class BinaryCrossEntropy(Loss, nn.BCELoss):
    """``L = -1/(NC) sum_{i,c} [y_ic log p_ic + (1 - y_ic) log(1 - p_ic)]``, ``p = sigmoid(z)``.

    ``torch.nn.BCELoss`` on probabilities (Keras' ``binary_crossentropy``). PyTorch clamps
    ``log`` at -100, so once a sigmoid saturates the loss and its gradient flatten out; prefer
    ``bce_logits`` (see the seed tutorial on numerical stability).
    """

    link = "sigmoid"
    consumes = "probs"
    target = "binary"


@LOSSES.register("bce_logits")
class BinaryCrossEntropyWithLogits(Loss, nn.BCEWithLogitsLoss):
    """The same ``L`` as ``bce``, computed from logits as
    ``max(z, 0) - z y + log(1 + exp(-|z|))`` (``torch.nn.BCEWithLogitsLoss``): stable for any z.
    """

    link = "sigmoid"
    consumes = "logits"
    target = "binary"
