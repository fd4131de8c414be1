"""A synthetic multi-label set: ``sklearn.datasets.make_multilabel_classification``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from lossbench.data.base import DATASETS, ClassificationData, split_indices
from lossbench.errors import LossbenchError, check_range


@DATASETS.register("multilabel")
class SyntheticMultilabel(ClassificationData):
    """Bag-of-words-like samples with ``n_labels`` labels on average out of ``n_classes``.

    Targets are multi-hot float rows. Features are standardised with the training split's
    mean and std. The data and its split depend only on ``seed``, not on the run's seed.
    """

    task = "multilabel"

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int,
        n_samples: int,
        n_features: int,
        n_classes: int,
        n_labels: int,
        allow_unlabeled: bool,
        seed: int,
        val_size: int,
        test_size: int,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(data_dir, batch_size, shuffle_seed)
        if n_classes < 2:
            raise LossbenchError(
                f"dataset.n_classes={n_classes}: a classifier needs at least 2 classes; "
                "set e.g. `dataset.n_classes=10`"
            )
        check_range("dataset.n_labels", n_labels, ge=1, le=n_classes, example=min(3, n_classes))
        check_range("dataset.n_features", n_features, ge=1, example=64)
        check_range("dataset.n_samples", n_samples, ge=3, example=6000)
        self.params = dict(
            n_samples=n_samples,
            n_features=n_features,
            n_classes=n_classes,
            n_labels=n_labels,
            allow_unlabeled=allow_unlabeled,
            random_state=seed,
        )
        self.seed = seed
        self.sizes = (val_size, test_size)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.params["n_features"],)

    @property
    def num_classes(self) -> int:
        return self.params["n_classes"]

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        from sklearn.datasets import make_multilabel_classification  # only this dataset's
        from sklearn.preprocessing import StandardScaler

        x, y = make_multilabel_classification(**self.params)
        n, (n_val, n_test) = len(x), self.sizes
        if min(n_val, n_test, n - n_val - n_test) < 1:
            raise LossbenchError(
                f"dataset.n_samples={n} with val_size={n_val} and test_size={n_test} leaves an "
                "empty split; each of train, val and test needs at least one sample"
            )
        val, test, train = split_indices(n, [n_val, n_test, n - n_val - n_test], self.seed)
        scaler = StandardScaler().fit(x[train.numpy()])
        columns = [f"x{i}" for i in range(x.shape[1])]
        self.feature_stats = (columns, scaler.mean_.tolist(), scaler.scale_.tolist())

        def part(idx: Tensor) -> tuple[Tensor, Tensor]:
            xs = scaler.transform(x[idx.numpy()])
            return torch.tensor(xs, dtype=torch.float32), torch.tensor(y[idx.numpy()]).float()

        return {"train": part(train), "val": part(val), "test": part(test)}
