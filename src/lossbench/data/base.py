"""The base data module: fixed splits held as tensors on the training device, batches taken as
index slices of a seeded permutation (no per-sample work, no worker processes), and image
batches normalised on the device."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from lossbench.errors import LossbenchError
from lossbench.heads import Task
from lossbench.registry import Registry

DATASETS: Registry[type[ClassificationData]] = Registry("dataset")


def split_indices(n: int, sizes: Sequence[int], seed: int) -> list[Tensor]:
    """Disjoint index sets of the given sizes from a seeded permutation of ``range(n)``."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return list(torch.split(order[: sum(sizes)], list(sizes)))


class InMemorySplit(Dataset):
    """A split's tensors ``(x, y)``, indexed by a whole batch of indices at once."""

    def __init__(self, *tensors: Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: Tensor) -> list[Tensor]:
        return [t[index] for t in self.tensors]

    def to(self, device: torch.device) -> InMemorySplit:
        return InMemorySplit(*(t.to(device) for t in self.tensors))


class BatchIndices(Sampler[Tensor]):
    """Index tensors of successive batches over ``range(n)``: a fresh permutation from
    ``generator`` each epoch (the same sequence for the same seed), or in order without one."""

    def __init__(
        self, n: int, batch_size: int, generator: torch.Generator | None, device: torch.device
    ) -> None:
        self.n, self.batch_size, self.generator, self.device = n, batch_size, generator, device

    def __iter__(self):
        if self.generator is None:
            order = torch.arange(self.n)
        else:
            order = torch.randperm(self.n, generator=self.generator)
        return iter(order.to(self.device).split(self.batch_size))

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)


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

    def __init__(self, data_dir: str | Path, batch_size: int, shuffle_seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise LossbenchError(
                f"dataset.batch_size={batch_size}: a batch needs at least one sample; "
                "set e.g. `dataset.batch_size=128`"
            )
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.shuffle = torch.Generator().manual_seed(shuffle_seed)
        self.splits: dict[str, InMemorySplit] = {}

    @property
    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in range(self.num_classes)]

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``{"train": (x, y), "val": (x, y), "test": (x, y)}``, the same for every call."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """The training device (a GPU keeps whole splits in its memory), else the CPU."""
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        if not self.splits:
            self.splits = {k: InMemorySplit(*v) for k, v in self.load_splits().items()}
        if any(s.tensors[0].device != self.device for s in self.splits.values()):
            self.splits = {k: v.to(self.device) for k, v in self.splits.items()}

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        data = self.splits[split]
        generator = self.shuffle if shuffle else None
        batches = BatchIndices(len(data), self.batch_size, generator, self.device)
        return DataLoader(data, sampler=batches, batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def transfer_batch_to_device(
        self, batch: list[Tensor], device: torch.device, dataloader_idx: int
    ) -> list[Tensor]:
        """A no-op where the split already lives on the device (Lightning's generic walk over
        the batch costs more than the copy it skips)."""
        return [t.to(device, non_blocking=True) for t in batch]

    def on_after_batch_transfer(self, batch: list[Tensor], dataloader_idx: int) -> list[Tensor]:
        x, y = batch
        if x.dtype == torch.uint8:
            x = (x.float() / 255.0 - self.mean) / self.std
        return [x, y]


def make_datamodule(
    name: str, data_dir: str | Path, shuffle_seed: int = 0, **params: Any
) -> ClassificationData:
    """The data module registered under ``name``, built from its config parameters; training
    batches are shuffled by a generator seeded with ``shuffle_seed`` (the run's seed)."""
    return DATASETS[name](data_dir=data_dir, shuffle_seed=shuffle_seed, **params)
