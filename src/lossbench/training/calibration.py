"""Scores that compare across losses, from the head's probabilities: negative log-likelihood,
Brier score and expected calibration error, before and after temperature scaling.

Multi-class: the head's probabilities as one distribution per sample (the sigmoid head's
per-class probabilities are divided by their sum); ``nll = -1/N sum_i log p_{i,y_i}``,
``brier = 1/N sum_i sum_c (p_ic - [c = y_i])^2`` (Brier 1950), ``ece`` on the top-1
confidence (torchmetrics' ``multiclass_calibration_error``, 15 equal-width bins; Guo et al. 2017,
Eq. 3). Multi-label: every (sample, label) probability as a Bernoulli, ``nll`` the mean binary
cross-entropy and ``brier`` the mean squared error over N·C, ``ece`` over all N·C probabilities
of a label being present, each bin's mean probability against how often its labels are present
(``binary_calibration_error``, 15 bins).

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks", Sec. 4.2):
one T > 0, logits divided by T, fitted on the validation split by minimising ``nll`` (over
log T, Brent's method in float64); ``ece_ts`` and ``nll_ts`` are the scores at that T.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.classification import (
    binary_calibration_error,
    multiclass_calibration_error,
)

from lossbench.heads import Head, Task

BINS = 15


def _real(t: Tensor) -> Tensor:
    """Float32 logits (bf16 ones cast up); float64 ones stay float64 (temperature fitting)."""
    return t if t.dtype == torch.float64 else t.float()


def distribution(head: Head, logits: Tensor) -> Tensor:
    """Per-sample class probabilities summing to one (multi-class scores)."""
    p = head.probs(_real(logits))
    return p if head.exclusive else p / p.sum(1, keepdim=True).clamp(min=1e-12)


def log_distribution(head: Head, logits: Tensor) -> Tensor:
    if head.exclusive:
        return F.log_softmax(_real(logits), 1)
    log_p = F.logsigmoid(_real(logits))
    return log_p - torch.logsumexp(log_p, 1, keepdim=True)


def nll(head: Head, logits: Tensor, y: Tensor, task: Task) -> Tensor:
    if task == "multiclass":
        return -log_distribution(head, logits).gather(1, y.long()[:, None]).mean()
    p = head.probs(_real(logits)).clamp(1e-7, 1 - 1e-7)
    return F.binary_cross_entropy(p, y.to(p.dtype))


def brier(head: Head, logits: Tensor, y: Tensor, task: Task) -> Tensor:
    if task == "multiclass":
        onehot = F.one_hot(y.long(), logits.shape[1]).float()
        return ((distribution(head, logits) - onehot) ** 2).sum(1).mean()
    return ((head.probs(logits.float()) - y.float()) ** 2).mean()


def ece(head: Head, logits: Tensor, y: Tensor, task: Task) -> Tensor:
    if task == "multiclass":
        p = distribution(head, logits)
        return multiclass_calibration_error(p, y.long(), logits.shape[1], n_bins=BINS)
    p = head.probs(logits.float()).flatten()
    return binary_calibration_error(p, y.long().flatten(), n_bins=BINS)


def fit_temperature(head: Head, logits: Tensor, y: Tensor, task: Task) -> float:
    """The T > 0 minimising ``nll(logits / T)`` on these samples (Guo et al. 2017): Brent's
    bounded minimisation of the NLL over log T in [log 1e-3, log 1e3], in float64 (the NLL is
    flat around its optimum, where float32 rounding would move T). A degenerate fit (at a
    bound, or not finite) keeps T = 1."""
    from scipy.optimize import minimize_scalar

    z = logits.detach().double()
    low, high = math.log(1e-3), math.log(1e3)

    def objective(log_t: float) -> float:
        return float(nll(head, z / math.exp(log_t), y, task))

    with torch.inference_mode():
        fit = minimize_scalar(objective, bounds=(low, high), method="bounded",
                              options={"xatol": 1e-10})  # fmt: skip
    t = math.exp(fit.x)
    return t if math.isfinite(t) and 1.001e-3 < t < 0.999e3 else 1.0


def scores(head: Head, logits: Tensor, y: Tensor, task: Task, temperature: float) -> dict:
    """``nll``, ``brier``, ``ece``, and ``nll_ts``, ``ece_ts`` at ``temperature``."""
    scaled = logits.float() / temperature
    return {
        "nll": nll(head, logits, y, task),
        "brier": brier(head, logits, y, task),
        "ece": ece(head, logits, y, task),
        "nll_ts": nll(head, scaled, y, task),
        "ece_ts": ece(head, scaled, y, task),
        "temperature": torch.tensor(temperature),
    }


def reliability(head: Head, logits: Tensor, y: Tensor, task: Task) -> dict[str, list[float]]:
    """The reliability diagram's bins (15, equal width; Guo et al. 2017, Fig. 1): per bin the
    number of predictions, the sum of their confidences and the number correct; multi-class:
    top-1 confidence and correctness, multi-label: each probability and whether the label is
    present. Sums, so that bins of several runs add up."""
    if task == "multiclass":
        p = distribution(head, logits)
        confidence, predicted = p.max(1)
        correct = (predicted == y.long()).float()
    else:
        confidence = head.probs(logits.float()).flatten()
        correct = y.float().flatten()
    index = ((confidence * BINS).ceil().long().clamp(1, BINS) - 1).cpu()  # (lo, hi] bins
    count = torch.bincount(index, minlength=BINS).float()
    return {
        "count": count.tolist(),
        "confidence": torch.zeros(BINS).index_add_(0, index, confidence.cpu().float()).tolist(),
        "correct": torch.zeros(BINS).index_add_(0, index, correct.cpu().float()).tolist(),
    }
