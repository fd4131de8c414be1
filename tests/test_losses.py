"""Every loss against an independent reference: value and gradient in float64, stability at
±100, the formula's reduction, and heads' predictions and tuned thresholds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lossbench import matrix, stability
from lossbench.heads import make_head
from lossbench.losses import LOSSES, make_criterion
from lossbench.training.metrics import tune_thresholds

N, C = 6, 4
GEN = torch.Generator().manual_seed(0)
LOGITS = torch.randn(N, C, generator=GEN, dtype=torch.float64) * 3
INDICES = torch.randint(0, C, (N,), generator=GEN)
MULTI_HOT = (torch.rand(N, C, generator=GEN) > 0.5).double()
MULTI_HOT[0] = 0.0  # a sample without labels
MULTI_HOT[1] = 1.0  # and one with every label
PARAMS = {  # non-default parameters, so that they are exercised too
    "ce": {"label_smoothing": 0.1},
    "ce_onehot": {"label_smoothing": 0.1},
    "bce_logits": {"pos_weight": [1.0, 2.0, 0.5, 3.0]},
    "focal": {"gamma": 2.0, "alpha": 0.25},
    "asl": {"gamma_pos": 1.0, "gamma_neg": 4.0, "clip": 0.05},
    "hinge": {"p": 1, "margin": 1.0},
    "gce": {"q": 0.7},
    "sce": {"alpha": 0.1, "beta": 1.0},
    "nce_rce": {"alpha": 1.0, "beta": 1.0},
}


def params(head: str, loss: str) -> dict:
    """The test's parameters of ``loss`` with ``head`` (alpha weighs the sigmoid focal's
    positives only: the softmax focal loss has none)."""
    if head == "softmax" and loss == "focal":
        return {"gamma": 2.0}
    return PARAMS.get(loss, {})


def one_hot(y: torch.Tensor) -> torch.Tensor:
    return torch.eye(C, dtype=torch.float64)[y]


def binary(y: torch.Tensor) -> torch.Tensor:
    return one_hot(y) if y.ndim == 1 else y


def probs(head: str, z: torch.Tensor) -> torch.Tensor:
    return torch.softmax(z, 1) if head == "softmax" else torch.sigmoid(z)


def focal_formula(z, t, gamma, alpha):
    """-a_t (1 - p_t)^gamma log p_t, mean over N·C (Lin et al. 2017, eq. 5)."""
    p = torch.sigmoid(z)
    p_t = torch.where(t == 1, p, 1 - p)
    a_t = torch.where(t == 1, alpha, 1 - alpha)
    return (-a_t * (1 - p_t) ** gamma * torch.log(p_t)).mean()


def asl_elements(z, t, gamma_pos, gamma_neg, clip):
    """Ridnik et al. 2021, eqs. 2 and 4: L+ = (1-p)^g+ log p, L- = p_m^g- log(1 - p_m)."""
    p = torch.sigmoid(z)
    p_m = torch.clamp(p - clip, min=0)
    return -(
        t * (1 - p) ** gamma_pos * torch.log(p) + (1 - t) * p_m**gamma_neg * torch.log(1 - p_m)
    )


def p_true(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.softmax(z, 1).gather(1, y[:, None]).squeeze(1)


def reference(head: str, loss: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The torch.nn functional where one exists, else the formula written out."""
    kw = params(head, loss)
    if loss == "focal" and head == "softmax":  # Mukhoti et al. 2020: -(1 - p_y)^g log p_y
        return (-((1 - p_true(z, y)) ** kw["gamma"]) * torch.log(p_true(z, y))).mean()
    if loss == "gce":  # Zhang & Sabuncu 2018, Eq. 6
        return ((1 - p_true(z, y) ** kw["q"]) / kw["q"]).mean()
    if loss == "sce":  # Wang et al. 2019, Eq. 7, with A = -4 in the reverse CE
        rce = 4.0 * (1 - p_true(z, y))  # -A (1 - p_y), A = -4
        return (kw["alpha"] * -torch.log(p_true(z, y)) + kw["beta"] * rce).mean()
    if loss == "mae":  # Ghosh et al. 2017: ||e_y - p||_1
        return (one_hot(y) - torch.softmax(z, 1)).abs().sum(1).mean()
    if loss == "nce_rce":  # Ma et al. 2020, Eq. 3: NCE = -log p_y / -sum_k log p_k
        log_p = torch.log(torch.softmax(z, 1))
        nce = -log_p.gather(1, y[:, None]).squeeze(1) / -log_p.sum(1)
        rce = 4.0 * (1 - p_true(z, y))
        return (kw["alpha"] * nce + kw["beta"] * rce).mean()
    if loss == "ce":
        return F.cross_entropy(z, y, **kw)
    if loss == "ce_onehot":
        t = binary(y)
        t = t / t.sum(1, keepdim=True).clamp(min=1)
        return F.cross_entropy(z, t, **kw)
    if loss == "nll":
        return F.nll_loss(F.log_softmax(z, 1), y)
    if loss == "hinge":
        return F.multi_margin_loss(z, y, **kw)
    if loss == "bce":
        return F.binary_cross_entropy(torch.sigmoid(z), binary(y))
    if loss == "bce_logits":
        w = torch.tensor(kw["pos_weight"], dtype=torch.float64)
        return F.binary_cross_entropy_with_logits(z, binary(y), pos_weight=w)
    if loss == "multilabel_soft_margin":
        return F.multilabel_soft_margin_loss(z, binary(y))
    if loss == "brier":
        return ((probs(head, z) - binary(y)) ** 2).mean()
    if loss == "focal":
        return focal_formula(z, binary(y), **kw)
    if loss == "asl":
        return asl_elements(z, binary(y), **kw).mean()
    raise AssertionError(f"no reference for {loss}: add one")


VALID = [(t, h, loss) for t, h, loss, ok in matrix.table() if ok]


def test_every_loss_is_valid_somewhere() -> None:
    assert {loss for _, _, loss in VALID} == set(LOSSES.names())


@pytest.mark.parametrize(("task", "head", "loss"), VALID)
def test_value_and_gradient_equal_the_reference(task: str, head: str, loss: str) -> None:
    targets = INDICES if task == "multiclass" else MULTI_HOT
    z1 = LOGITS.clone().requires_grad_()
    z2 = LOGITS.clone().requires_grad_()
    got = make_criterion(head, loss, **params(head, loss)).double()(z1, targets)
    want = reference(head, loss, z2, targets)
    assert got.shape == ()
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    torch.testing.assert_close(z1.grad, z2.grad)


@pytest.mark.parametrize("loss", ["focal", "asl"])
def test_hand_written_losses_pass_gradcheck(loss: str) -> None:
    criterion = make_criterion("sigmoid", loss, **PARAMS[loss]).double()
    z = LOGITS.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: criterion(x, MULTI_HOT), (z,))


def test_asl_is_the_official_sum_divided_by_n_times_c() -> None:
    kw = PARAMS["asl"]
    official_sum = asl_elements(LOGITS, MULTI_HOT, **kw).sum()
    ours = make_criterion("sigmoid", "asl", **kw).double()(LOGITS, MULTI_HOT)
    torch.testing.assert_close(ours * N * C, official_sum)


def test_keras_aliases_are_the_same_losses() -> None:
    for alias, name in [
        ("sparse_categorical_crossentropy", "ce"),
        ("categorical_crossentropy", "ce_onehot"),
        ("binary_crossentropy", "bce"),
    ]:
        head = "sigmoid" if name == "bce" else "softmax"
        a = make_criterion(head, alias)(LOGITS, INDICES)
        b = make_criterion(head, name)(LOGITS, INDICES)
        torch.testing.assert_close(a, b)


# Logits of ±100: row 0 confidently right, row 1 confidently wrong (targets 1,0 / 0,1).
BIG = torch.tensor([[100.0, -100.0], [100.0, -100.0]])
BIG_INDEX = torch.tensor([0, 1])
BIG_BINARY = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
LOG_CLIP = math.log(0.05)
LIMITS = {  # (head, loss, targets, analytic loss, analytic dL/dz)
    "bce_logits": ("sigmoid", BIG_BINARY, 200 / 4, [[0, 0], [0.25, -0.25]]),
    "ce": ("softmax", BIG_INDEX, 200 / 2, [[0, 0], [0.5, -0.5]]),
    # a_t (1 - p_t)^2 * 100 for the two wrong elements: 0.75 * 100 and 0.25 * 100
    "focal": ("sigmoid", BIG_BINARY, (75 + 25) / 4, [[0, 0], [0.75 / 4, -0.25 / 4]]),
    # negative at z = 100: -(1 - clip)^4 log(clip); positive at z = -100: -log sigmoid(-100)
    "asl": ("sigmoid", BIG_BINARY, (-(0.95**4) * LOG_CLIP + 100) / 4, [[0, 0], [0, -0.25]]),
    # the wrong row: -(1 - 0)^2 log e^-200 = 200; its gradient is CE's
    "focal_softmax": ("softmax", BIG_INDEX, 200 / 2, [[0, 0], [0.5, -0.5]]),
    # (1 - p_y^q)/q with p_y = e^-200 on the wrong row; p_y^q (hence the gradient) vanishes
    "gce": ("softmax", BIG_INDEX, (1 / 0.7) / 2, [[0, 0], [0, 0]]),
    # 0.1 CE + RCE: (0.1 * 200 + 4) / 2; the RCE's gradient vanishes, CE's is scaled by 0.1
    "sce": ("softmax", BIG_INDEX, (0.1 * 200 + 4) / 2, [[0, 0], [0.05, -0.05]]),
    "mae": ("softmax", BIG_INDEX, 2 / 2, [[0, 0], [0, 0]]),
    # NCE: log p_y / sum log p = -200 / -200 = 1 on the wrong row, 0 / -200 on the right one
    "nce_rce": ("softmax", BIG_INDEX, (1 + 4) / 2, [[0, 0], [0, 0]]),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("loss", list(LIMITS))
def test_stable_at_large_logits(loss: str, dtype: torch.dtype) -> None:
    head, targets, value, grad = LIMITS[loss]
    kw = {"asl": {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05},
          "focal": {"gamma": 2.0, "alpha": 0.25}}.get(loss, {})  # fmt: skip
    z = BIG.to(dtype).detach().clone().requires_grad_()
    target = targets if targets.dtype == torch.long else targets.to(dtype)
    got = make_criterion(head, loss.removesuffix("_softmax"), **kw)(z, target)
    got.backward()
    assert torch.isfinite(got) and torch.isfinite(z.grad).all()
    torch.testing.assert_close(got.item(), value, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z.grad, torch.tensor(grad, dtype=dtype), rtol=1e-5, atol=1e-6)


def test_bce_on_probabilities_goes_flat_where_bce_logits_does_not() -> None:
    rows = {(z, y): r for z, y, *r in stability.rows()}
    exact, bce, bce_logits, exact_grad, bce_grad, logits_grad = rows[(20.0, 0)]
    assert bce == pytest.approx(100.0)  # log(1 - 1) clamped to -100, instead of 20
    assert bce_logits == pytest.approx(exact) and logits_grad == pytest.approx(exact_grad)
    assert bce_grad == 0.0


def test_predictions() -> None:
    z = torch.tensor([[2.0, -1.0, 0.5], [-3.0, -2.0, -4.0]])
    assert make_head("softmax").predict(z, "multiclass").tolist() == [0, 1]
    assert make_head("sigmoid").predict(z, "multiclass").tolist() == [0, 1]
    assert make_head("sigmoid").predict(z, "multilabel").tolist() == [[1, 0, 1], [0, 0, 0]]
    high = make_head("sigmoid", threshold=0.7).predict(z, "multilabel")
    assert high.tolist() == [[1, 0, 0], [0, 0, 0]]  # sigmoid(0.5) = 0.62 < 0.7
    per_class = make_head("sigmoid", threshold="tuned").predict(
        z, "multilabel", torch.tensor([0.9, 0.2, 0.01])
    )
    assert per_class.tolist() == [[0, 1, 1], [0, 0, 1]]  # sigmoid(-2) = 0.12 < 0.2


def test_thresholds_are_tuned_for_f1_per_class() -> None:
    p = torch.tensor([[0.9, 0.1, 0.1], [0.8, 0.2, 0.2], [0.3, 0.3, 0.3], [0.2, 0.4, 0.4]])
    y = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 1]])
    assert tune_thresholds(p, y).tolist() == pytest.approx([0.8, 0.5, 0.4])


def test_bad_threshold_is_refused() -> None:
    from lossbench.errors import LossbenchError

    with pytest.raises(LossbenchError, match="neither a probability in \\(0, 1\\) nor 'tuned'"):
        make_head("sigmoid", threshold=1.5)


COUNTS = torch.tensor([50, 10, 5, 1])


BALANCED = [("softmax", "ce"), ("sigmoid", "bce_logits"), ("sigmoid", "focal"),
            ("softmax", "focal")]  # fmt: skip


@pytest.mark.parametrize("kind", ["effective_number", "inverse_frequency"])
@pytest.mark.parametrize(("head", "loss"), BALANCED)
def test_class_balanced_losses_weigh_each_sample_by_its_class(head, loss, kind) -> None:
    """Cui et al. 2019: w_c = (1 - b)/(1 - b^n_c) (or 1/n_c), normalised to sum to C; each
    sample's loss (its C binary terms for the sigmoid losses) times w_y."""
    beta = 0.99
    raw = (1 - beta) / (1 - beta ** COUNTS.double()) if kind == "effective_number" else (
        1 / COUNTS.double())  # fmt: skip
    w = raw / raw.sum() * C
    criterion = make_criterion(head, loss, COUNTS, class_weight=kind, beta=beta).double()
    z1 = LOGITS.clone().requires_grad_()
    got = criterion(z1, INDICES)
    z2 = LOGITS.clone().requires_grad_()
    kw = params(head, loss)
    if loss == "ce":
        per = F.cross_entropy(z2, INDICES, reduction="none")
    elif loss == "bce_logits":
        per = F.binary_cross_entropy_with_logits(z2, one_hot(INDICES), reduction="none")
    elif head == "sigmoid":
        p = torch.sigmoid(z2)
        t = one_hot(INDICES)
        p_t = torch.where(t == 1, p, 1 - p)
        per = -((1 - p_t) ** kw["gamma"]) * torch.log(p_t)
    else:
        per = -((1 - p_true(z2, INDICES)) ** kw["gamma"]) * torch.log(p_true(z2, INDICES))
    want = (per * w[INDICES].view(-1, *([1] * (per.ndim - 1)))).mean()
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    torch.testing.assert_close(z1.grad, z2.grad)


def test_class_weights_are_refused_on_multilabel_data() -> None:
    from lossbench.errors import LossbenchError

    with pytest.raises(LossbenchError, match="single-label data only"):
        make_criterion(
            "sigmoid", "bce_logits", COUNTS, "multilabel", class_weight="inverse_frequency"
        )
