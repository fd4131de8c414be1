"""The model registry: every ``model=`` name, and ``make_model``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lossbench.registry import Registry

MODELS: Registry[type[nn.Module]] = Registry("model")


class BinaryLogit(nn.Module):
    """A two-class model's one logit ``z`` (..., 1) as the two classes' logits ``(-z, z)``.

    Their sigmoids are ``(1 - sigmoid(z), sigmoid(z))`` and their softmax is
    ``(sigmoid(-2z), sigmoid(2z))``: what a sigmoid head reads as the classes' probabilities.
    """

    def forward(self, z: Tensor) -> Tensor:
        return torch.cat([-z, z], dim=-1)


def make_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    one_logit: bool = False,
    **params: object,
) -> nn.Module:
    """The model registered under ``name``, built for the dataset's input shape and classes;
    ``one_logit`` (a two-class set's sigmoid head): one output z, then :class:`BinaryLogit`."""
    model = MODELS[name](input_shape, 1 if one_logit else num_classes, **params)
    if not one_logit:
        return model
    wrapped = nn.Sequential(model, BinaryLogit())
    for attr in ("sequential", "input_mean", "input_std", "input_size"):  # asked of a model
        if hasattr(model, attr):
            setattr(wrapped, attr, getattr(model, attr))
    return wrapped
