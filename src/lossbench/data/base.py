"""The base data module: fixed splits held as in-memory tensors, batches normalised on device."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lossbench.errors import LossbenchError
from lossbench.heads import Task
from lossbench.registry import Registry

DATASETS: Registry[type[ClassificationData]] = Registry("dataset")


def split_indices(n: int, sizes: Sequence[int], seed: int) -> list[Tensor]:
    """Disjoint index sets of the given sizes from a seeded permutation of ``range(n)``."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return list(torch.split(order[: sum(sizes)], list(sizes)))


class ClassificationData(pl.LightningDataModule):
    """Train/val/test splits as tensors ``(x, target)``.

    ``target`` is a class index (multi-class) or a multi-hot float row (multi-label).
    Subclasses set ``task`` and implement ``input_shape``, ``num_classes``, ``load_splits``.
    Image inputs stay uint8 in memory; :meth:`on_after_batch_transfer` scales them on the
    device as ``(x / 255 - mean) / std``.
    """

    task: ClassVar[Task]
    mean: float = 0.0
    std: float = 1.0

    def __init__(self, data_dir: str | Path, batch_size: int) -> None:
        super().__init__()
        if batch_size < 1:
            raise LossbenchError(
                f"dataset.batch_size={batch_size}: a batch needs at least one sample; "
                "set e.g. `dataset.batch_size=128`"
            )
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.splits: dict[str, TensorDataset] = {}

    @property
    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``{"train": (x, y), "val": (x, y), "test": (x, y)}``, the same for every call."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = {k: TensorDataset(*v) for k, v in self.load_splits().items()}

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        return DataLoader(self.splits[split], batch_size=self.batch_size, shuffle=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def on_after_batch_transfer(self, batch: list[Tensor], dataloader_idx: int) -> list[Tensor]:
        x, y = batch
        if x.dtype == torch.uint8:
            x = (x.float() / 255.0 - self.mean) / self.std
        return [x, y]


def make_datamodule(name: str, data_dir: str | Path, **params: Any) -> ClassificationData:
    """The data module registered under ``name``, built from its config parameters."""
    return DATASETS[name](data_dir=data_dir, **params)
