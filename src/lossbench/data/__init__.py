"""Data modules: one per dataset name, all registered in :data:`DATASETS`."""

from lossbench.data import canvases, images, multilabel  # noqa: F401  (registers the datasets)
from lossbench.data.base import DATASETS, ClassificationData, make_datamodule

__all__ = ["DATASETS", "ClassificationData", "make_datamodule"]
