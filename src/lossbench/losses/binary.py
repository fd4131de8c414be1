"""Binary (one-vs-all) losses for the sigmoid head: mean over N samples and C classes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from lossbench.errors import LossbenchError, check_range
from lossbench.losses.base import LOSSES, Loss
from lossbench.losses.cross_entropy import SoftmaxFocal
from lossbench.losses.weights import ClassWeighted


@LOSSES.register("bce")
class BinaryCrossEntropy(Loss, nn.BCELoss):
    """``L = -1/(NC) sum_{i,c} [y_ic log p_ic + (1 - y_ic) log(1 - p_ic)]``, ``p = sigmoid(z)``.

    ``torch.nn.BCELoss`` on probabilities (Keras' ``binary_crossentropy``). PyTorch clamps
    ``log`` at -100, and float32 ``sigmoid(z)`` rounds to 1 from z ≈ 17: there the loss and its
    gradient go flat. Prefer ``bce_logits`` (the README measures the difference).

    Computed in float32 with autocast off: CUDA's autocast (``trainer.precision=bf16-mixed``)
    refuses ``binary_cross_entropy`` as unsafe in half precision, and PyTorch's AMP notes say
    to disable autocast around it and cast its inputs to float32 (float64 is kept).
    """

    links = ("sigmoid",)
    consumes = "probs"
    target = "binary"

    def __init__(self) -> None:
        super().__init__()

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        dtype = torch.promote_types(input.dtype, torch.float32)  # float64 stays
        with torch.autocast(input.device.type, enabled=False):
            return super().forward(input.to(dtype), target.to(dtype))


@LOSSES.register("bce_logits")
class BinaryCrossEntropyWithLogits(Loss, ClassWeighted, nn.BCEWithLogitsLoss):
    """The ``bce`` formula computed from logits as ``max(z, 0) - z y + log(1 + exp(-|z|))``,
    optionally with ``pos_weight`` w on the positive term: ``-w y log p - (1 - y) log(1 - p)``.

    ``torch.nn.BCEWithLogitsLoss``: stable for any z. ``pos_weight``: null, one number, or one
    number per class. ``class_weight``: each sample's C terms times its class's weight w_y
    (Cui et al. 2019's class-balanced sigmoid loss; :mod:`lossbench.losses.weights`).
    """

    links = ("sigmoid",)
    consumes = "logits"
    target = "binary"

    def __init__(
        self,
        pos_weight: float | Sequence[float] | None = None,
        class_weight: str = "none",
        beta: float = 0.999,
    ) -> None:
        weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float)
        if weight is not None and not bool((weight > 0).all()):
            raise LossbenchError(
                f"loss.pos_weight={pos_weight} is out of range: every weight must be > 0. "
                "Fix: set e.g. `loss.pos_weight=2.0`, or `loss.pos_weight=null`"
            )
        super().__init__(pos_weight=weight)
        self._init_weighting(class_weight, beta)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        weights = self.sample_weights(target)
        if weights is None:
            return super().forward(logits, target)
        per = nn.functional.binary_cross_entropy_with_logits(
            logits, target, pos_weight=self.pos_weight, reduction="none"
        )
        return self.weighted_mean(per, weights)


@LOSSES.register("multilabel_soft_margin")
class MultiLabelSoftMargin(Loss, nn.MultiLabelSoftMarginLoss):
    """``L = -1/N sum_i 1/C sum_c [y_ic log sigmoid(z_ic) + (1 - y_ic) log sigmoid(-z_ic)]``.

    ``torch.nn.MultiLabelSoftMarginLoss``: the same value as ``bce_logits``, reached through a
    different kernel (mean over classes per sample, then over samples).
    """

    links = ("sigmoid",)
    consumes = "logits"
    target = "binary"

    def __init__(self) -> None:
        super().__init__()


@LOSSES.register("focal")
class SigmoidFocal(Loss, ClassWeighted):
    """Focal loss, Lin et al. 2017 (RetinaNet). With the sigmoid head,
    ``torchvision.ops.sigmoid_focal_loss``:

    ``L = 1/(NC) sum_{i,c} -w_{y_i} a_t (1 - p_t)^gamma log p_t``, ``p_t = p`` if ``y = 1`` else
    ``1 - p``, ``a_t = alpha`` if ``y = 1`` else ``1 - alpha`` (``alpha = -1``, the default: no
    weighting; RetinaNet's detectors used 0.25). ``log p_t`` comes from
    ``binary_cross_entropy_with_logits``, so it is stable. With the softmax head it is the
    multi-class focal loss, :class:`~lossbench.losses.cross_entropy.SoftmaxFocal`.
    ``class_weight``: Cui et al. 2019's class-balanced focal loss (w_y per sample).
    """

    links = ("sigmoid", "softmax")
    consumes = "logits"
    target = "binary"
    variants = {"softmax": SoftmaxFocal}

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float = -1.0,
        class_weight: str = "none",
        beta: float = 0.999,
    ) -> None:
        super().__init__()
        check_range("loss.gamma", gamma, ge=0, example=2.0)
        if alpha != -1 and not 0 <= alpha <= 1:
            raise LossbenchError(
                f"loss.alpha={alpha} is out of range: it must be in [0, 1], or -1 for no "
                "weighting. Fix: set e.g. `loss.alpha=0.25`"
            )
        self.gamma, self.alpha = gamma, alpha
        self._init_weighting(class_weight, beta)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        per = sigmoid_focal_loss(logits, target, self.alpha, self.gamma, reduction="none")
        return self.weighted_mean(per, self.sample_weights(target))


@LOSSES.register("asl")
class AsymmetricLoss(Loss):
    """Asymmetric loss, Ridnik et al. 2021 ("Asymmetric Loss For Multi-Label Classification"):

    ``L = 1/(NC) sum_{i,c} -[y (1 - p)^g+ log p + (1 - y) p_m^g- log(1 - p_m)]`` with
    ``p = sigmoid(z)`` and the shifted probability ``p_m = max(p - clip, 0)`` for negatives.

    Reduction: the mean over N·C elements. The official code (``AsymmetricLossOptimized``)
    returns the *sum*, N·C times this value; a learning rate tuned there is N·C times smaller
    here. Logs are taken in log-space (``logsigmoid``) instead of the official ``clamp(eps)``,
    so values and gradients stay exact for large |z|.
    """

    links = ("sigmoid",)
    consumes = "logits"
    target = "binary"

    def __init__(self, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05) -> None:
        super().__init__()
        check_range("loss.gamma_pos", gamma_pos, ge=0, example=0.0)
        check_range("loss.gamma_neg", gamma_neg, ge=0, example=4.0)
        check_range("loss.clip", clip, ge=0, lt=1, example=0.05)
        self.gamma_pos, self.gamma_neg, self.clip = gamma_pos, gamma_neg, clip

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        log_p = nn.functional.logsigmoid(logits)
        if self.clip > 0:
            p_m = (torch.sigmoid(logits) - self.clip).clamp(min=0)
            log_not_p_m = torch.log((torch.sigmoid(-logits) + self.clip).clamp(max=1))
        else:
            p_m = torch.sigmoid(logits)
            log_not_p_m = nn.functional.logsigmoid(-logits)
        positive = torch.sigmoid(-logits).pow(self.gamma_pos) * log_p
        negative = p_m.pow(self.gamma_neg) * log_not_p_m
        return -(target * positive + (1 - target) * negative).mean()
