"""What every loss declares, and the registry that the configs, the matrix and errors read."""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import nn

from lossbench.heads import Consumes
from lossbench.registry import Registry

Target = Literal["index", "binary", "distribution"]


class Loss(nn.Module):
    """Declarations of a registered loss (a mixin for ``nn.Module`` losses).

    ``links``: the heads whose probability model the loss fits (``softmax``, ``sigmoid``).
    ``consumes``: what ``forward`` takes: ``logits``, ``probs`` or ``log_probs`` of the head.
    ``variants``: head → the class computing the same loss for that head, when one formula
    cannot serve both (the focal loss). ``target``: ``index`` (class indices (N,),
    multi-class only), ``binary`` (one-hot /
    multi-hot (N, C)) or ``distribution`` (rows summing to one: one-hot, or a multi-hot row
    divided by its number of labels).

    Every loss reduces by the mean: over samples, and over classes too for per-class losses,
    as ``torch.nn`` losses do by default.
    """

    links: ClassVar[tuple[str, ...]]
    consumes: ClassVar[Consumes]
    target: ClassVar[Target]
    # another implementation of the same loss for a head (``focal`` with the softmax head)
    variants: ClassVar[dict[str, type[Loss]]] = {}

    @classmethod
    def for_head(cls, head: str) -> type[Loss]:
        """The class that computes this loss for ``head``: a variant, or this class."""
        return cls.variants.get(head, cls)


LOSSES: Registry[type[Loss]] = Registry("loss")
