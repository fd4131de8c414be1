"""Class-balanced weighting (``loss.class_weight``) for losses on single-label data.

``effective_number`` (Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of
Samples", Eq. 1 and Sec. 4): class c with n_c training samples has E_c = (1 − β^n_c)/(1 − β)
effective samples and weight w_c ∝ 1/E_c = (1 − β)/(1 − β^n_c); ``inverse_frequency``:
w_c ∝ 1/n_c. Both are normalised so that Σ_c w_c = C (as Cui et al. do), and a class without
training samples gets weight 0. A sample of class y weighs w_y: on its cross-entropy term, or on
each of its C binary terms (Cui et al.'s class-balanced sigmoid and focal losses).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lossbench.errors import LossbenchError, check_range

WEIGHTINGS = ("none", "inverse_frequency", "effective_number")


def class_weights(counts: Tensor, kind: str, beta: float) -> Tensor:
    """Per-class weights w (C,) from the training counts, Σ w = C over the classes present."""
    n = counts.double()
    if kind == "effective_number":
        raw = torch.where(n > 0, (1 - beta) / (1 - beta**n), torch.zeros_like(n))
    else:
        raw = torch.where(n > 0, 1 / n, torch.zeros_like(n))
    return (raw / raw.sum() * len(n)).float()


class ClassWeighted(nn.Module):
    """A loss that weighs each sample by its class's weight (``class_weight``, ``beta``); the
    run gives it the training split's class counts."""

    def _init_weighting(self, class_weight: str, beta: float) -> None:
        if class_weight not in WEIGHTINGS:
            raise LossbenchError(
                f"loss.class_weight={class_weight!r} is not one of {', '.join(WEIGHTINGS)}. "
                "Fix: e.g. `loss.class_weight=effective_number`"
            )
        check_range("loss.beta", beta, ge=0, lt=1, example=0.999)
        self.class_weight, self.beta = class_weight, beta
        self.register_buffer("weights", None)

    def set_class_counts(self, counts: Tensor, task: str) -> None:
        """Compute the class weights from the training split's class counts."""
        if self.class_weight == "none":
            return
        if task != "multiclass":
            raise LossbenchError(
                f"loss.class_weight={self.class_weight} weighs each sample by its one class: "
                "single-label data only. Fix: `loss.class_weight=none` on a multi-label set"
            )
        self.weights = class_weights(counts, self.class_weight, self.beta)

    def sample_weights(self, target: Tensor) -> Tensor | None:
        """w_y per sample (N,) for class indices, one-hot rows or a two-class set's 0/1 column;
        None without weighting."""
        if self.class_weight == "none":
            return None
        if self.weights is None:
            raise RuntimeError("class-balanced loss used before set_class_counts")
        w = self.weights.to(target.device)
        if target.ndim == 2 and target.shape[1] == 1 < len(w):  # a two-class set's one logit
            return w[target[:, 0].long()]  # its 0/1 column is the class index
        return w[target] if target.ndim == 1 else (target * w).sum(1)

    @staticmethod
    def weighted_mean(elements: Tensor, weights: Tensor | None) -> Tensor:
        """The mean of per-sample (N,) or per-element (N, C) losses, each sample times w_y."""
        if weights is None:
            return elements.mean()
        shape = (-1,) + (1,) * (elements.ndim - 1)
        return (elements * weights.to(elements.dtype).view(shape)).mean()
