"""What every loss declares, and the registry that the configs, the matrix and errors read."""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import nn

from lossbench.heads import Consumes
from lossbench.registry import Registry

Target = Literal["index", "binary"]


class Loss(nn.Module):
    """Mixin of declarations for a registered loss.

    ``link``: the head whose probability model the loss assumes (``softmax`` or ``sigmoid``).
    ``consumes``: what its ``forward`` takes: ``logits``, ``probs`` or ``log_probs``.
    ``target``: ``index`` (class indices, shape (N,)) or ``binary`` (one-hot / multi-hot, (N, C)).
    """

    link: ClassVar[str]
    consumes: ClassVar[Consumes]
    target: ClassVar[Target]


LOSSES: Registry[type[Loss]] = Registry("loss")
