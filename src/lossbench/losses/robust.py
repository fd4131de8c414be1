"""Losses robust to label noise, for the softmax head on single-label data: mean over the N
samples of a per-sample loss of ``p = softmax(z)`` and the label ``y`` (log p from
``log_softmax``, so they stay finite for any logits)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lossbench.errors import check_range
from lossbench.losses.base import LOSSES, Loss

RCE_LOG_ZERO = -4.0  # A: the value log 0 takes in the reverse cross-entropy (Wang et al. 2019)


class SoftmaxLoss(Loss):
    """A loss of the softmax probabilities and class indices."""

    links = ("softmax",)
    consumes = "logits"
    target = "index"

    @staticmethod
    def log_p_true(logits: Tensor, target: Tensor) -> Tensor:
        """log p_y per sample (N,)."""
        return F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)

    @staticmethod
    def reverse_ce(logits: Tensor, target: Tensor) -> Tensor:
        """RCE = -sum_k p_k log q_k with q the one-hot label and log 0 = A: ``-A (1 - p_y)``
        (Wang et al. 2019, Eq. 6, A = -4)."""
        p_y = SoftmaxLoss.log_p_true(logits, target).exp()
        return -RCE_LOG_ZERO * (1 - p_y)


@LOSSES.register("gce")
class GeneralizedCrossEntropy(SoftmaxLoss):
    """Generalized cross-entropy, Zhang & Sabuncu 2018 ("Generalized Cross Entropy Loss for
    Training Deep Neural Networks with Noisy Labels", Eq. 6): ``L_q = (1 - p_y^q) / q``,
    ``q`` in (0, 1]; CE as q → 0, MAE (up to a factor 2) at q = 1. The paper uses q = 0.7."""

    def __init__(self, q: float = 0.7) -> None:
        super().__init__()
        check_range("loss.q", q, gt=0, le=1, example=0.7)
        self.q = q

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        p_q = (self.q * self.log_p_true(logits, target)).exp()
        return ((1 - p_q) / self.q).mean()


@LOSSES.register("sce")
class SymmetricCrossEntropy(SoftmaxLoss):
    """Symmetric cross-entropy, Wang et al. 2019 ("Symmetric Cross Entropy for Robust Learning
    with Noisy Labels", Eq. 7): ``alpha CE + beta RCE``, RCE = ``-A (1 - p_y)`` with A = -4.
    The paper's CIFAR-10 setting: alpha = 0.1, beta = 1. (The authors' code clamps the label at
    1e-4 instead, i.e. A = ln 1e-4 ≈ -9.2; lossbench follows the paper.)"""

    def __init__(self, alpha: float = 0.1, beta: float = 1.0) -> None:
        super().__init__()
        check_range("loss.alpha", alpha, ge=0, example=0.1)
        check_range("loss.beta", beta, ge=0, example=1.0)
        self.alpha, self.beta = alpha, beta

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        ce = -self.log_p_true(logits, target)
        return (self.alpha * ce + self.beta * self.reverse_ce(logits, target)).mean()


@LOSSES.register("mae")
class MeanAbsoluteError(SoftmaxLoss):
    """Mean absolute error, Ghosh et al. 2017 ("Robust Loss Functions under Label Noise for Deep
    Neural Networks"): ``||e_y - p||_1 = 2 (1 - p_y)``, symmetric, hence noise-tolerant."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return (2 * (1 - self.log_p_true(logits, target).exp())).mean()


@LOSSES.register("nce_rce")
class NormalizedCEReverseCE(SoftmaxLoss):
    """NCE + RCE, the active-passive loss of Ma et al. 2020 ("Normalized Loss Functions for Deep
    Learning with Noisy Labels", Eqs. 3 and 9): ``alpha NCE + beta RCE`` with
    ``NCE = log p_y / sum_k log p_k`` and RCE as in ``sce`` (A = -4). The paper's CIFAR-10
    setting: alpha = beta = 1 (CIFAR-100: 10, 0.1)."""

    def __init__(self, alpha: float = 1.0, beta: float = 1.0) -> None:
        super().__init__()
        check_range("loss.alpha", alpha, ge=0, example=1.0)
        check_range("loss.beta", beta, ge=0, example=1.0)
        self.alpha, self.beta = alpha, beta

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        log_p = F.log_softmax(logits, dim=1)
        nce = log_p.gather(1, target[:, None]).squeeze(1) / log_p.sum(dim=1)
        return (self.alpha * nce + self.beta * self.reverse_ce(logits, target)).mean()
