"""lossbench: measure which output head and loss to train a classifier with."""

__version__ = "0.1.0"
