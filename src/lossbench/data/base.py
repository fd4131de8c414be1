"""The base data module: fixed splits held as tensors on the training device, batches taken as
index slices of a seeded permutation (no per-sample work, no worker processes), and image
batches normalised on the device. Sets too large for memory stream instead: the same batches
of the same permutation, decoded per sample by DataLoader workers into pinned memory."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from lossbench.data import stress
from lossbench.data.stress import ImbalanceConfig, NoiseConfig, Stress
from lossbench.errors import LossbenchError
from lossbench.heads import Task
from lossbench.registry import Registry

log = logging.getLogger(__name__)
DATASETS: Registry[type[ClassificationData]] = Registry("dataset")
SPLITS = ("train", "val", "test")
Augment = Callable[[Tensor], Tensor]  # one uint8 image (C, H, W) → an augmented one
# splits loaded once per process and shared by data modules of one config (shared_splits)
_SHARED: dict[str, tuple[dict[str, InMemorySplit], Stress | None]] | None = None


@contextmanager
def shared_splits() -> Iterator[None]:
    """Within this block, data modules of the same dataset config (``cache_key``, noise and
    imbalance) load and stress their splits once and share the tensors: the fused launcher
    builds one data module per member, all reading the same in-memory split."""
    global _SHARED
    outer, _SHARED = _SHARED, {} if _SHARED is None else _SHARED
    try:
        yield
    finally:
        _SHARED = outer


def split_indices(n: int, sizes: Sequence[int], seed: int) -> list[Tensor]:
    """Disjoint index sets of the given sizes from a seeded permutation of ``range(n)``."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return list(torch.split(order[: sum(sizes)], list(sizes)))


def carve(
    n: int, sizes: Sequence[int], seed: int, labels: Sequence[Any] | None = None
) -> list[Tensor]:
    """Disjoint index sets of ``sizes`` (summing to ``n``) from ``range(n)``, fixed by ``seed``.
    With ``labels`` (one class per sample), each set but the last is drawn stratified by
    class, as scikit-learn's ``train_test_split(stratify=labels)`` draws it, so that every set
    keeps the classes' proportions (a rare class is not left out of a small test split by
    chance); where a class has too few samples for that, and without labels, the sets are
    :func:`split_indices`'. Multi-label ``labels`` (0/1 rows, (n, C)) are carved by iterative
    stratification (:mod:`lossbench.data.stratify`): every set keeps each label's share."""
    if labels is None:
        return split_indices(n, sizes, seed)
    import numpy as np
    from sklearn.model_selection import train_test_split

    y, rest, parts = np.asarray(labels), np.arange(n), []
    if y.ndim == 2:
        from lossbench.data.stratify import iterative

        return [torch.from_numpy(part) for part in iterative(y, sizes, seed)]
    try:
        for size in sizes[:-1]:
            rest, part = train_test_split(rest, test_size=size, stratify=y[rest],
                                          random_state=seed)  # fmt: skip
            parts.append(torch.from_numpy(part))
    except ValueError as err:  # a class of one sample, or more classes than a set's samples
        log.warning("the splits are carved at random, not stratified by class: %s", err)
        return split_indices(n, sizes, seed)
    return [*parts, torch.from_numpy(rest)]


def count(size: float, n: int, key: str) -> int:
    """A split size given as a count (``500``) or a fraction of ``n`` (``0.1``)."""
    k = round(size * n) if isinstance(size, float) and 0 < size < 1 else int(size)
    if not 0 < k < n:
        raise LossbenchError(
            f"{key}={size} leaves an empty split of the {n} samples it is carved from; give a "
            f"count between 1 and {n - 1} or a fraction in (0, 1), e.g. `{key}=0.1`"
        )
    return k


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
        """A generator: the permutation is drawn at the first batch, not when the iterator is
        made (a multi-worker DataLoader makes one that it throws away)."""
        if self.generator is None:
            order = torch.arange(self.n)
        else:
            order = torch.randperm(self.n, generator=self.generator)
        yield from order.to(self.device).split(self.batch_size)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)


class StreamedBatches(BatchIndices):
    """:class:`BatchIndices` as lists of ints, for a DataLoader's ``batch_sampler``: the same
    batches, fetched sample by sample by its workers."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator | None) -> None:
        super().__init__(n, batch_size, generator, torch.device("cpu"))

    def __iter__(self):
        return (batch.tolist() for batch in super().__iter__())


class Augmented(Dataset):
    """A per-sample dataset with ``augment`` applied to its images (in the workers)."""

    def __init__(self, samples: Dataset, augment: Augment) -> None:
        self.samples, self.augment = samples, augment

    def __len__(self) -> int:
        return len(self.samples)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        x, y = self.samples[i]
        return self.augment(x), y


class ClassificationData(pl.LightningDataModule):
    """Train/val/test splits ``(x, target)``.

    ``target`` is a class index (multi-class) or a multi-hot float row (multi-label).
    Subclasses set ``task`` (or :meth:`task_of`) and implement ``input_shape``, ``num_classes``
    and ``load_splits``; a set that can stream also implements ``samples``. Image inputs stay
    uint8 until they reach the device, where :meth:`on_after_batch_transfer` augments the
    training batches (if ``augment`` is set) and scales them as ``(x / 255 - mean) / std``, per
    channel; ``mean``/``std`` None: measured on the training split.
    """

    task: ClassVar[Task]
    streams: ClassVar[bool] = False  # whether the set can be read sample by sample

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int,
        shuffle_seed: int = 0,
        mean: float | Sequence[float] | None = 0.0,
        std: float | Sequence[float] | None = 1.0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise LossbenchError(
                f"dataset.batch_size={batch_size}: a batch needs at least one sample; "
                "set e.g. `dataset.batch_size=128`"
            )
        for value in [std] if isinstance(std, int | float) else std or []:
            if not value > 0:
                raise LossbenchError(
                    f"dataset.std={std} is out of range: every std must be > 0. Fix: set e.g. "
                    "`dataset.std=0.3`, or `dataset.std=null` to measure it on the training split"
                )
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.shuffle = torch.Generator().manual_seed(shuffle_seed)
        # the DataLoaders' own seeds (workers'), so that making a loader draws nothing from the
        # global RNG that dropout uses: in memory or streamed, training draws the same numbers
        self.loader_seeds = torch.Generator().manual_seed(shuffle_seed)
        self.mean, self.std = mean, std
        self.splits: dict[str, InMemorySplit] = {}
        self.stream = False  # True: batches come from `samples` through DataLoader workers
        self.num_workers = 0
        self.augment: Augment | None = None
        self._scale: tuple[Tensor, Tensor] | None = None
        # features standardised at load time: (column names, mean, scale) of the train split
        self.feature_stats: tuple[list[str], list[float], list[float]] | None = None
        self.noise, self.imbalance = NoiseConfig(), ImbalanceConfig()
        self.name = type(self).__name__.lower()
        self.stressed: Stress | None = None  # what noise/imbalance did, once applied
        self.cache_key: str | None = None  # the config that fixes the splits (make_datamodule)

    def set_stress(self, noise: NoiseConfig, imbalance: ImbalanceConfig, name: str) -> None:
        """Label noise and class imbalance for the training split (``lossbench.data.stress``);
        ``name``: the config name, whose published noise map applies."""
        stress.check(noise, imbalance, self.task)
        self.noise, self.imbalance, self.name = noise, imbalance, name

    def stress_targets(self, targets: dict[str, Tensor]) -> tuple[dict, dict]:
        """``({split: kept indices}, {split: targets})`` after noise and imbalance."""
        keep, new, self.stressed = stress.apply(targets, self.noise, self.imbalance,
                                                self.num_classes, self.name)  # fmt: skip
        return keep, new

    @classmethod
    def task_of(cls, params: dict[str, Any]) -> Task:
        """The task of the set these config parameters describe (without loading it)."""
        return cls.task

    @property
    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        raise NotImplementedError

    @property
    def class_names(self) -> list[str]:
        return [str(c) for c in range(self.num_classes)]

    @property
    def origin(self) -> str:
        """Where the data comes from (a folder, a file, a generator), for the run's tags."""
        return str(self.data_dir)

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``{"train": (x, y), "val": (x, y), "test": (x, y)}``, the same for every call."""
        raise NotImplementedError

    def targets(self, split: str = "train") -> Tensor:
        """A split's targets: class indices (N,) or multi-hot rows (N, C)."""
        if self.stream:
            return self.samples(split).targets  # type: ignore[attr-defined]
        if not self.splits:
            self.setup()
        return self.splits[split].tensors[1]

    def split_tags(self) -> dict[str, str]:
        """The run's tags of its splits: their sizes (``n_train``, ``n_val``, ``n_test``) and
        ``test_split``, a fingerprint of the test split (its targets in order): runs whose test
        sets differ (carved by each run's own ``split_seed``) have different fingerprints, so
        the report can tell resampled splits from one fixed test set."""
        targets = {k: self.targets(k).cpu() for k in SPLITS}
        tags = {f"n_{k}": str(len(y)) for k, y in targets.items()}
        digest = hashlib.sha1(targets["test"].contiguous().numpy().tobytes()).hexdigest()
        return tags | {"test_split": digest[:12]}

    def class_counts(self) -> Tensor:
        """Training samples per class (C,): of each class, or with each label."""
        y = self.targets().cpu()
        if y.ndim == 1:
            return torch.bincount(y, minlength=self.num_classes)
        return y.sum(0).round().long()

    def preprocessing(self) -> dict[str, Any]:
        """How a raw input becomes a model input, for ``lossbench.predict``: images
        (channels, size, per-channel mean/std) or feature columns (names, mean, scale)."""
        if len(self.input_shape) == 3:
            mean, std = (t.flatten().tolist() for t in self.scale(torch.device("cpu")))
            channels, height, width = self.input_shape
            return {"kind": "image", "channels": channels, "size": [height, width],
                    "mean": mean, "std": std}  # fmt: skip
        columns, mean, scale = self.feature_stats or (
            [f"x{i}" for i in range(self.input_shape[0])], [0.0] * self.input_shape[0],
            [1.0] * self.input_shape[0])  # fmt: skip
        return {"kind": "features", "columns": columns, "mean": mean, "scale": scale}

    def samples(self, split: str) -> Dataset:
        """The split as a per-sample dataset ``i -> (uint8 image (C, H, W), target)``."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """The training device (a GPU keeps whole splits in its memory), else the CPU."""
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        if self.stream:
            return
        if not self.splits:
            key = None
            if _SHARED is not None and self.cache_key is not None:
                key = json.dumps([self.cache_key, repr(self.noise), repr(self.imbalance)])
            if key is not None and key in _SHARED:
                self.splits, self.stressed = _SHARED[key]
            else:
                loaded = self.load_splits()
                keep, targets = self.stress_targets({k: y for k, (_, y) in loaded.items()})
                self.splits = {
                    k: InMemorySplit(x[keep[k]], targets[k]) for k, (x, _) in loaded.items()
                }
                if key is not None:
                    _SHARED[key] = (self.splits, self.stressed)
        if any(s.tensors[0].device != self.device for s in self.splits.values()):
            self.splits = {k: v.to(self.device) for k, v in self.splits.items()}

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        generator = self.shuffle if shuffle else None
        if self.stream:
            samples = self.samples(split)
            if shuffle and self.augment is not None:
                samples = Augmented(samples, self.augment)
            batches = StreamedBatches(len(samples), self.batch_size, generator)
            return DataLoader(
                samples, batch_sampler=batches, num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda", persistent_workers=self.num_workers > 0,
                generator=self.loader_seeds,
            )  # fmt: skip
        data = self.splits[split]
        batches = BatchIndices(len(data), self.batch_size, generator, self.device)
        return DataLoader(data, sampler=batches, batch_size=None, generator=self.loader_seeds)

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
        if x.dtype != torch.uint8:
            return [x, y]
        training = self.trainer is not None and self.trainer.training
        if training and self.augment is not None and not self.stream:
            x = torch.stack([self.augment(image) for image in x])  # per sample, on the device
        mean, std = self.scale(x.device)
        return [x.float().div_(255.0).sub_(mean).div_(std), y]  # in place: one allocation

    def scale(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(mean, std)`` as (C, 1, 1) tensors on ``device``; measured on the training split
        (of the images scaled to [0, 1]) where the config gives none."""
        if self._scale is None or self._scale[0].device != device:
            mean, std = self.mean, self.std
            if mean is None or std is None:
                measured = self.measure()
                mean = measured[0] if mean is None else mean
                std = measured[1] if std is None else std
            shape = (-1, 1, 1) if len(self.input_shape) == 3 else (-1,)
            self._scale = tuple(
                torch.as_tensor(v, dtype=torch.float32, device=device).reshape(shape)
                for v in (mean, std)
            )  # type: ignore[assignment]
        return self._scale  # type: ignore[return-value]

    def measure(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images, scaled to [0, 1]."""
        if self.stream:  # a sample of 2,000 training images
            train = self.samples("train")
            images = torch.stack([train[i][0] for i in range(min(len(train), 2000))])
        elif self.splits:
            images = self.splits["train"].tensors[0]
        else:
            images = self.load_splits()["train"][0]
        x = images.float().div(255).transpose(0, 1).reshape(images.shape[1], -1)
        return x.mean(1).tolist(), x.std(1).clamp(min=1e-6).tolist()


def make_datamodule(
    name: str, data_dir: str | Path, shuffle_seed: int = 0, **params: Any
) -> ClassificationData:
    """The data module registered under ``name``, built from its config parameters; training
    batches are shuffled by a generator seeded with ``shuffle_seed`` (the run's seed)."""
    module = DATASETS[name](data_dir=data_dir, shuffle_seed=shuffle_seed, **params)
    module.cache_key = json.dumps([name, str(data_dir), params], sort_keys=True, default=str)
    return module
