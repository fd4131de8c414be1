"""Data modules: one per dataset name, all registered in :data:`DATASETS`."""

from lossbench.data import (  # noqa: F401  (registers the datasets)
    archives,
    canvases,
    digits,
    files,
    images,
    multilabel,
    tables,
)
from lossbench.data.base import DATASETS, ClassificationData, make_datamodule

__all__ = ["DATASETS", "ClassificationData", "make_datamodule"]
