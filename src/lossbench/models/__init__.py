"""The networks. Each maps an input batch to raw logits (N, C); heads and losses do the rest."""

from lossbench.models import small  # noqa: F401  (registers the models)
from lossbench.models.registry import MODELS, make_model

__all__ = ["MODELS", "make_model"]
