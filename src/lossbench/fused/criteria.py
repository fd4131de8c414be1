"""The members' training losses of a fused step, those computing one function in one call.

A fused step computed each member's criterion in turn: a few small kernels per member, launched
from Python. On a GPU that was about half of the step (96 CNN members on an H200: 51.7 ms a
step, 27.3 ms with one loss for all; experiments/bench/README.md). Members whose criteria are
the same function (the same head, loss and parameters, the same class weights: a grid's seeds
of one pair) are computed in one call, vectorised over the members by ``torch.func.vmap``:
each member's loss is still its own mean over its own batch. A criterion that ``vmap`` cannot
run (an operation without a batching rule) is computed member by member, as before.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

log = logging.getLogger("lossbench")
# vmap runs an operation without a batching rule (multi_margin_loss: the hinge loss) member by
# member in C++, still one call from Python; its warning would say so at every fused run
warnings.filterwarnings("ignore", message="There is a performance drop because we have not "
                        "yet implemented the batching rule")  # fmt: skip


def config_key(cfg: Any) -> str:
    """A run's head and loss settings (``cfg.head``, ``cfg.loss``), as one string."""
    from omegaconf import OmegaConf

    settings = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("head", "loss")}
    return json.dumps(settings, sort_keys=True, default=str)


def criterion_key(criterion: nn.Module, config: Hashable) -> Hashable:
    """What makes two criteria the same function: ``config`` (the run's head and loss
    settings) and the criterion's own tensors (class weights drawn from each member's labels)."""
    tensors = tuple((k, tuple(v.shape), tuple(v.flatten().tolist()))
                    for k, v in criterion.state_dict().items())  # fmt: skip
    return config, tensors


class MemberLosses:
    """``(logits (M, B, ...), targets (M, B, ...)) -> (M,)``: member i's criterion on row i.

    ``keys[i]``: member i's :func:`criterion_key`; members of one key share one call."""

    def __init__(self, criteria: Sequence[nn.Module], keys: Sequence[Hashable]) -> None:
        self.criteria = list(criteria)
        groups: dict[Hashable, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        self.groups = list(groups.values())
        self.order = [i for group in self.groups for i in group]
        self.batched: dict[int, Callable[..., Tensor] | None] = {}  # group → vmapped, or None
        self.rows: dict[tuple[int, torch.device], slice | Tensor] = {}
        self.inverse: Tensor | None = None

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        out = torch.cat([self._group(g, group, logits, targets)
                         for g, group in enumerate(self.groups)])  # fmt: skip
        if self.order == sorted(self.order):
            return out
        if self.inverse is None or self.inverse.device != out.device:
            self.inverse = torch.argsort(torch.tensor(self.order, device=out.device))
        return out[self.inverse]

    def _rows(self, g: int, group: list[int], device: torch.device) -> slice | Tensor:
        """Group ``g``'s rows of a ``(M, ...)`` tensor: a slice where they are consecutive."""
        rows = self.rows.get((g, device))
        if rows is None:
            first, last = group[0], group[-1]
            consecutive = group == list(range(first, last + 1))
            rows = slice(first, last + 1) if consecutive else torch.tensor(group, device=device)
            self.rows[(g, device)] = rows
        return rows

    def _group(self, g: int, group: list[int], logits: Tensor, targets: Tensor) -> Tensor:
        if len(group) > 1 and self.batched.get(g, True) is not None:
            rows = self._rows(g, group, logits.device)
            batched = self.batched.get(g) or torch.func.vmap(self.criteria[group[0]])
            try:
                losses = batched(logits[rows], targets[rows]).float()
            except Exception as err:  # noqa: BLE001  (no batching rule: one member at a time)
                if g in self.batched:  # it ran before: a real error, not vmap's
                    raise
                log.debug("criterion of members %s is not vectorised: %s", group, err)
                self.batched[g] = None
            else:
                self.batched[g] = batched
                return losses
        return torch.stack([self.criteria[i](logits[i], targets[i]).float() for i in group])
