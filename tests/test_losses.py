"""Each valid head/loss pair's value equals its formula written out here."""

from __future__ import annotations

import pytest
import torch

from lossbench import matrix
from lossbench.heads import make_head
from lossbench.losses import LOSSES, make_criterion

torch.manual_seed(0)
N, C = 6, 4
LOGITS = torch.randn(N, C, dtype=torch.float64) * 3
INDICES = torch.randint(0, C, (N,))
MULTI_HOT = (torch.rand(N, C) > 0.5).double()


def softmax_ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-1/N sum_i log(exp(z_iy) / sum_k exp(z_ik))."""
    p = torch.exp(z) / torch.exp(z).sum(dim=1, keepdim=True)
    return -torch.log(p[torch.arange(len(y)), y]).mean()


def binary_ce(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """-1/(NC) sum_ic t log p + (1 - t) log(1 - p), p = 1 / (1 + exp(-z))."""
    p = 1 / (1 + torch.exp(-z))
    return -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()


def one_hot(y: torch.Tensor) -> torch.Tensor:
    t = torch.zeros(len(y), C, dtype=torch.float64)
    t[torch.arange(len(y)), y] = 1.0
    return t


FORMULAS = {
    "ce": lambda z, y: softmax_ce(z, y),
    "nll": lambda z, y: softmax_ce(z, y),
    "bce": lambda z, y: binary_ce(z, one_hot(y) if y.ndim == 1 else y),
    "bce_logits": lambda z, y: binary_ce(z, one_hot(y) if y.ndim == 1 else y),
}
VALID = [(t, h, loss) for t, h, loss, ok in matrix.table() if ok]


def test_every_loss_has_a_formula_here() -> None:
    assert set(FORMULAS) == set(LOSSES)


@pytest.mark.parametrize(("task", "head", "loss"), VALID)
def test_criterion_equals_formula(task: str, head: str, loss: str) -> None:
    targets = INDICES if task == "multiclass" else MULTI_HOT
    got = make_criterion(head, loss)(LOGITS, targets)
    want = FORMULAS[loss](LOGITS, targets)
    assert got.shape == ()
    torch.testing.assert_close(got, want)


def test_sigmoid_on_multiclass_uses_one_vs_all_targets() -> None:
    got = make_criterion("sigmoid", "bce_logits")(LOGITS, INDICES)
    torch.testing.assert_close(got, binary_ce(LOGITS, one_hot(INDICES)))


def test_predictions() -> None:
    z = torch.tensor([[2.0, -1.0, 0.5], [-3.0, -2.0, -4.0]])
    assert make_head("softmax").predict(z, "multiclass").tolist() == [0, 1]
    assert make_head("sigmoid").predict(z, "multiclass").tolist() == [0, 1]
    assert make_head("sigmoid").predict(z, "multilabel").tolist() == [[1, 0, 1], [0, 0, 0]]
    high = make_head("sigmoid", threshold=0.7).predict(z, "multilabel")
    assert high.tolist() == [[1, 0, 0], [0, 0, 0]]  # sigmoid(0.5) = 0.62 < 0.7
