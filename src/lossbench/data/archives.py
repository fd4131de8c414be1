"""CIFAR-10, CIFAR-100 and SVHN in torchvision's on-disk layout, checked against the published
checksums, then decoded by lossbench (the same bytes torchvision reads) and cached as uint8
tensors; the validation split is carved from train by ``split_seed``.

Downloads go through torchvision's own classes (``download=true``, into ``data_dir``). Before
decoding, every file is checked against the MD5 that torchvision lists for it, so a truncated
or foreign file is refused whatever wrote it; the decoders themselves are plain functions of a
folder, tested on files written in the same layout.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from lossbench.data.base import DATASETS
from lossbench.data.images import DownloadedImages, fetch, writable
from lossbench.errors import LossbenchError


def decode_cifar(folder: Path, files: Sequence[str], label_key: str) -> tuple[Tensor, Tensor]:
    """CIFAR's Python batches (pickled dicts of ``data`` (N, 3072) uint8 and labels) as images
    (N, 3, 32, 32) uint8 and labels."""
    images, labels = [], []
    for name in files:
        with (folder / name).open("rb") as f:
            entry = pickle.load(f, encoding="latin1")  # noqa: S301 (checksum verified first)
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(entry[label_key])
    return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.long)


def cifar_class_names(folder: Path, meta: str, key: str) -> list[str]:
    with (folder / meta).open("rb") as f:
        return list(pickle.load(f, encoding="latin1")[key])  # noqa: S301


def decode_svhn(path: Path) -> tuple[Tensor, Tensor]:
    """SVHN's MATLAB file: ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) with digit 0 stored as
    10; as images (N, 3, 32, 32) and labels 0–9."""
    import scipy.io  # SVHN's .mat files alone need it

    mat = scipy.io.loadmat(str(path))
    images = np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1))
    labels = mat["y"].astype(np.int64).reshape(-1) % 10
    return torch.from_numpy(images), torch.from_numpy(labels)


class VerifiedArchive(DownloadedImages):
    """A torchvision image set with published checksums: 32×32 RGB, per-channel mean/std."""

    layout: ClassVar[str]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, 32, 32)

    @property
    def folder(self) -> Path:
        raise NotImplementedError

    def checksums(self) -> dict[str, str]:
        """``{file name: MD5}`` as torchvision lists them."""
        raise NotImplementedError

    def get(self) -> None:
        """Download through torchvision (which also checks the archive's MD5)."""
        raise NotImplementedError

    def decode(self) -> dict[str, tuple[Tensor, Tensor]]:
        """``{"train": (x, y), "test": (x, y)}`` from the verified files."""
        raise NotImplementedError

    def _missing(self) -> list[Path]:
        return [
            self.folder / name for name in self.checksums() if not (self.folder / name).is_file()
        ]

    def prepare_data(self) -> None:
        fetch(self._missing, self.download, self.get, self.folder, self.layout)

    def verify(self) -> None:
        """Refuse files whose MD5 is not the published one (truncated, corrupt or not CIFAR)."""
        bad = [n for n, md5 in self.checksums().items() if not check_integrity(
            str(self.folder / n), md5)]  # fmt: skip
        if bad:
            raise LossbenchError(
                f"{', '.join(str(self.folder / n) for n in bad)} do not match the published "
                f"checksums (truncated, corrupt or another set's files). Fix: delete "
                f"{self.folder} and let lossbench download it again (dataset.download=true)"
            )

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        self.prepare_data()
        cache = self.folder / "lossbench" / "splits.pt"
        newest = max((self.folder / n).stat().st_mtime for n in self.checksums())
        if cache.is_file() and cache.stat().st_mtime >= newest:
            decoded = torch.load(cache, weights_only=True)
        else:
            self.verify()
            decoded = self.decode()
            writable(cache.parent)
            torch.save(decoded, cache.with_suffix(".part"))
            cache.with_suffix(".part").replace(cache)
        return self.with_val(decoded["train"], decoded["test"])


class Cifar(VerifiedArchive):
    """CIFAR (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images"):
    50,000 train and 10,000 test images of 32×32 RGB."""

    source: ClassVar[type[datasets.CIFAR10]]
    layout = "the Python version, cifar-*-batches-py / cifar-100-python, as torchvision unpacks it"
    label_key: ClassVar[str]

    @property
    def folder(self) -> Path:
        return self.data_dir / self.source.base_folder

    def checksums(self) -> dict[str, str]:
        files = [*self.source.train_list, *self.source.test_list]
        return {**dict(files), self.source.meta["filename"]: self.source.meta["md5"]}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_names(self) -> list[str]:
        path = self.folder / self.source.meta["filename"]
        if path.is_file():
            return cifar_class_names(self.folder, self.source.meta["filename"],
                                     self.source.meta["key"])  # fmt: skip
        return [str(i) for i in range(100 if self.source is datasets.CIFAR100 else 10)]

    def get(self) -> None:
        self.source(str(self.data_dir), train=True, download=True)

    def decode(self) -> dict[str, tuple[Tensor, Tensor]]:
        names = {"train": [n for n, _ in self.source.train_list],
                 "test": [n for n, _ in self.source.test_list]}  # fmt: skip
        return {s: decode_cifar(self.folder, files, self.label_key) for s, files in names.items()}


@DATASETS.register("cifar10")
class Cifar10(Cifar):
    """CIFAR-10: 10 classes (airplane … truck), 6,000 images each."""

    source = datasets.CIFAR10
    label_key = "labels"


@DATASETS.register("cifar100")
class Cifar100(Cifar):
    """CIFAR-100: 100 fine classes, 600 images each."""

    source = datasets.CIFAR100
    label_key = "fine_labels"


@DATASETS.register("svhn")
class SVHN(VerifiedArchive):
    """Street View House Numbers (Netzer et al. 2011), cropped digits: 73,257 train and 26,032
    test images of 32×32 RGB, classes 0–9 (torchvision's ``SVHN``; ``extra`` is not used)."""

    layout = "train_32x32.mat and test_32x32.mat in <data_dir>/SVHN, as torchvision downloads them"

    @property
    def folder(self) -> Path:
        return self.data_dir / "SVHN"

    @property
    def num_classes(self) -> int:
        return 10

    def checksums(self) -> dict[str, str]:
        return {datasets.SVHN.split_list[s][1]: datasets.SVHN.split_list[s][2]
                for s in ("train", "test")}  # fmt: skip

    def get(self) -> None:
        for split in ("train", "test"):
            datasets.SVHN(str(self.folder), split=split, download=True)

    def decode(self) -> dict[str, tuple[Tensor, Tensor]]:
        return {s: decode_svhn(self.folder / datasets.SVHN.split_list[s][1])
                for s in ("train", "test")}  # fmt: skip
