"""Squared-error losses on probabilities, for either head."""

from __future__ import annotations

from torch import nn

from lossbench.losses.base import LOSSES, Loss


@LOSSES.register("brier")
class Brier(Loss, nn.MSELoss):
    """``L = 1/(NC) sum_{i,c} (p_ic - y_ic)^2``, ``p`` the head's probabilities, ``y`` one-hot
    or multi-hot (``torch.nn.MSELoss``). Brier (1950) sums over classes: his score is C·L.
    """

    links = ("softmax", "sigmoid")
    consumes = "probs"
    target = "binary"

    def __init__(self) -> None:
        super().__init__()
