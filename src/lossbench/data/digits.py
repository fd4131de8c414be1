"""scikit-learn's bundled handwritten digits: real images, offline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lossbench.data.base import DATASETS, ClassificationData, count, split_indices


@DATASETS.register("digits")
class Digits(ClassificationData):
    """The UCI optical handwritten digits as scikit-learn ships them (``load_digits``; Alpaydin &
    Kaynak 1998): 1,797 images of 8×8 pixels with 17 grey levels (0..16), classes 0–9. Held as
    uint8 images (levels × 255/16); val and test are carved by ``split_seed``; ``mean``/``std``
    null: measured on the training split."""

    task = "multiclass"

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int,
        val_size: float = 0.1,
        test_size: float = 0.2,
        split_seed: int = 0,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(data_dir, batch_size, shuffle_seed, mean, std)
        self.sizes, self.split_seed = (val_size, test_size), split_seed

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, 8, 8)

    @property
    def num_classes(self) -> int:
        return 10

    @property
    def origin(self) -> str:
        return "sklearn.datasets.load_digits"

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        from sklearn.datasets import load_digits  # only this dataset needs scikit-learn

        digits = load_digits()
        images = np.round(digits.images * 255 / 16).astype(np.uint8)[:, None]
        x, y = torch.from_numpy(images), torch.from_numpy(digits.target).long()
        n = len(x)
        n_val = count(self.sizes[0], n, "dataset.val_size")
        n_test = count(self.sizes[1], n, "dataset.test_size")
        val, test, train = split_indices(n, [n_val, n_test, n - n_val - n_test], self.split_seed)
        return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test])}
