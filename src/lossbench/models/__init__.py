"""The networks. Each maps an input batch to raw logits (N, C); heads and losses do the rest."""

from lossbench.models import (  # noqa: F401  (registers the models)
    resnet_cifar,
    small,
    torchvision_models,
)
from lossbench.models.registry import MODELS, make_model

__all__ = ["MODELS", "make_model"]
