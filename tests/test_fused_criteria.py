"""lossbench.fused.criteria: the members' losses of a fused step, those of one criterion in one
vectorised call, equal each member's criterion computed alone (values and gradients)."""

from __future__ import annotations

import pytest
import torch

from lossbench import matrix
from lossbench.fused.criteria import MemberLosses, criterion_key
from lossbench.heads import make_head
from lossbench.losses import make_criterion

VALID = [(t, h, loss) for t, h, loss, ok in matrix.table() if ok]
M, B, C = 4, 16, 5
COUNTS = torch.tensor([30, 10, 5, 40, 15])


def inputs(task: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(M, B, C, generator=gen) * 3
    if task == "multiclass":
        return logits, torch.randint(0, C, (M, B), generator=gen)
    return logits, (torch.rand(M, B, C, generator=gen) > 0.5).float()


def one_by_one(criteria, logits, targets) -> torch.Tensor:
    return torch.stack([c(logits[i], targets[i]) for i, c in enumerate(criteria)])


@pytest.mark.parametrize(("task", "head", "loss"), VALID)
def test_one_call_per_criterion_equals_each_member_alone(task: str, head: str, loss: str) -> None:
    criteria = [make_criterion(make_head(head), loss, COUNTS, task) for _ in range(M)]
    losses = MemberLosses(criteria, [criterion_key(c, (head, loss)) for c in criteria])
    assert losses.groups == [list(range(M))]
    logits, targets = inputs(task)
    z1, z2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    got, want = losses(z1, targets), one_by_one(criteria, z2, targets)
    assert losses.batched[0] is not None, f"{loss} fell back to one member at a time"
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-5, atol=1e-6)


def test_members_of_different_criteria_keep_their_order_and_their_own_loss() -> None:
    """Interleaved keys (ce, focal, ce, focal(gamma=3)), class weights that differ by member
    (one member's own label counts): four groups' worth of calls, each member its own loss."""
    kinds = [("ce", {}), ("focal", {}), ("ce", {}), ("focal", {"gamma": 3.0})]
    criteria = [make_criterion(make_head("softmax"), loss, COUNTS, "multiclass", **params)
                for loss, params in kinds]  # fmt: skip
    criteria.append(make_criterion(make_head("softmax"), "ce", COUNTS, "multiclass",
                                   class_weight="inverse_frequency"))  # fmt: skip
    criteria.append(make_criterion(make_head("softmax"), "ce", COUNTS.flip(0), "multiclass",
                                   class_weight="inverse_frequency"))  # fmt: skip
    configs = [(loss, tuple(sorted(p.items()))) for loss, p in kinds]
    configs += [("ce", "inverse_frequency")] * 2  # the same config, other class counts
    keys = [criterion_key(c, k) for c, k in zip(criteria, configs, strict=True)]
    losses = MemberLosses(criteria, keys)
    assert losses.groups == [[0, 2], [1], [3], [4], [5]]
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, B, C, generator=gen)
    targets = torch.randint(0, C, (6, B), generator=gen)
    torch.testing.assert_close(losses(logits, targets), one_by_one(criteria, logits, targets))


def test_a_criterion_vmap_cannot_run_is_computed_member_by_member() -> None:
    class ItemLoss(torch.nn.Module):  # .item(): data-dependent, which vmap refuses
        def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return logits.mean() * float(logits.max().item() > -1e9)

    criteria = [ItemLoss() for _ in range(3)]
    losses = MemberLosses(criteria, [criterion_key(c, "item") for c in criteria])
    logits, targets = torch.randn(3, B, C), torch.zeros(3, B, dtype=torch.long)
    got = losses(logits, targets)
    assert losses.batched[0] is None  # tried once, then member by member
    torch.testing.assert_close(got, logits.mean(dim=(1, 2)))
    torch.testing.assert_close(losses(logits, targets), got)
