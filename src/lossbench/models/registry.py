"""The model registry: every ``model=`` name, and ``make_model``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lossbench.registry import Registry

MODELS: Registry[type[nn.Module]] = Registry("model")


def make_model(name: str, input_shape: Sequence[int], num_classes: int, **params: object):
    """The model registered under ``name``, built for the dataset's input shape and classes."""
    return MODELS[name](input_shape, num_classes, **params)
