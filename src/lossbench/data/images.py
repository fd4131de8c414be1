"""MNIST and Fashion-MNIST through torchvision's own loaders, held (and cached) as uint8 tensors.

Files live in torchvision's layout, ``<data_dir>/<MNIST|FashionMNIST>/raw/*-idx?-ubyte``.
Where they are missing, a ``system_dir`` of gzipped IDX files (Debian's
``dataset-fashion-mnist`` puts them in ``/usr/share/datasets/fashion-mnist``) is unpacked into
that layout; else torchvision downloads them when ``download`` is true.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor
from torchvision import datasets

from lossbench.data.base import DATASETS, ClassificationData, split_indices
from lossbench.errors import LossbenchError, check_writable_dir

OFFLINE_HINT = (
    "Datasets that work offline: fashion_mnist where Debian's package dataset-fashion-mnist is "
    "installed (`apt-get install dataset-fashion-mnist`), digits, yeast, multilabel (synthetic), "
    "and your own files (image_folder, image_csv, table)."
)


def writable(folder: Path) -> None:
    check_writable_dir(folder, f"the data folder {folder}", "set data_dir to a writable folder")


def fetch(
    missing: Callable[[], list[Path]],
    download: bool,
    get: Callable[[], object],
    folder: Path,
    layout: str,
) -> None:
    """Make sure no file is ``missing()``: download them with ``get()`` if ``download``, else
    (or if that fails) refuse, listing the files expected and the datasets that work offline."""
    if not missing():
        return
    reason = "downloading is off (dataset.download=false)"
    if download:
        writable(folder)
        try:
            get()
            if not missing():
                return
        except Exception as err:  # torchvision raises RuntimeError/URLError variants
            reason = f"the download failed ({str(err).splitlines()[0]})"
    files = "\n  ".join(str(f) for f in missing())
    raise LossbenchError(
        f"dataset files are missing and {reason}. Expected:\n  {files}\n"
        f"Fix: connect to the network with dataset.download=true, or put those files there "
        f"({layout}). {OFFLINE_HINT}"
    )


class DownloadedImages(ClassificationData):
    """A published image set in ``data_dir``, downloaded by torchvision: its training images
    (the validation split carved out by ``split_seed``) and its test images."""

    task = "multiclass"

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int,
        val_size: int,
        split_seed: int,
        download: bool,
        mean: float | Sequence[float] | None,
        std: float | Sequence[float] | None,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(data_dir, batch_size, shuffle_seed, mean, std)
        self.val_size, self.split_seed, self.download = val_size, split_seed, download

    def with_val(
        self, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor]
    ) -> dict[str, tuple[Tensor, Tensor]]:
        """The three splits: ``val_size`` training images carved out as validation."""
        x, y = train
        if not 0 < self.val_size < len(x):
            raise LossbenchError(
                f"dataset.val_size={self.val_size} must be between 1 and {len(x) - 1} "
                f"(the training split has {len(x)} images)"
            )
        val, rest = split_indices(len(x), [self.val_size, len(x) - self.val_size], self.split_seed)
        return {"train": (x[rest], y[rest]), "val": (x[val], y[val]), "test": test}


class TorchvisionImages(DownloadedImages):
    """A torchvision MNIST-format set: 60k train images (val carved out) and 10k test images."""

    source: ClassVar[type[datasets.MNIST]]

    def __init__(self, system_dir: str | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.system_dir = Path(system_dir) if system_dir else None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, 28, 28)

    @property
    def num_classes(self) -> int:
        return len(self.source.classes)

    @property
    def class_names(self) -> list[str]:
        return list(self.source.classes)

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / self.source.__name__ / "raw"

    def raw_files(self) -> list[Path]:
        """The unpacked IDX files torchvision reads, e.g. ``train-images-idx3-ubyte``."""
        return [self.raw_dir / Path(url).stem for url, _ in self.source.resources]

    def _missing(self) -> list[Path]:
        return [f for f in self.raw_files() if not f.is_file()]

    def _unpack_system_copy(self) -> None:
        gz = [self.system_dir / f"{f.name}.gz" for f in self.raw_files()]
        if not all(g.is_file() for g in gz):
            return
        writable(self.raw_dir)
        for src, dst in zip(gz, self.raw_files(), strict=True):
            tmp = dst.with_suffix(".part")
            try:
                with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            except (OSError, EOFError) as err:
                raise LossbenchError(
                    f"the system copy {src} cannot be unpacked ({err}). Fix: reinstall it "
                    "(`apt-get install --reinstall dataset-fashion-mnist`), or set "
                    "dataset.system_dir=null to download instead"
                ) from None
            tmp.replace(dst)

    def prepare_data(self) -> None:
        """Make sure the raw files exist: unpack the system copy, else download, else explain."""
        if self._missing() and self.system_dir is not None and self.system_dir.is_dir():
            self._unpack_system_copy()
        fetch(self._missing, self.download, lambda: self.source(str(self.data_dir), download=True),
              self.raw_dir, "gunzipped IDX, torchvision's layout")  # fmt: skip

    def _read(self, train: bool) -> tuple[Tensor, Tensor]:
        """``(images (N, 1, 28, 28) uint8, labels)``, decoded by torchvision once, then cached
        as tensors in ``<data_dir>/<set>/lossbench/`` (rebuilt when a raw file is newer)."""
        cache = self.raw_dir.parent / "lossbench" / f"{'train' if train else 'test'}.pt"
        newest_raw = max(f.stat().st_mtime for f in self.raw_files())
        if cache.is_file() and cache.stat().st_mtime >= newest_raw:
            return torch.load(cache, weights_only=True)
        split = "train" if train else "t10k"
        try:
            ds = self.source(str(self.data_dir), train=train, download=False)
            images, labels = ds.data, ds.targets.long()
        except Exception as err:  # torchvision's parser fails in many ways on broken bytes
            raise LossbenchError(
                f"the {self.source.__name__} files {self.raw_dir}/{split}-*-ubyte are truncated "
                f"or corrupt ({type(err).__name__}: {err}). Fix: delete that folder and let "
                "lossbench download or unpack them again"
            ) from None
        self._check(images, labels, split)
        tensors = images.unsqueeze(1).contiguous(), labels
        writable(cache.parent)
        torch.save(tensors, cache.with_suffix(".part"))
        cache.with_suffix(".part").replace(cache)
        return tensors

    def _check(self, images: Tensor, labels: Tensor, split: str) -> None:
        """Refuse files that parse but disagree: counts, image size, labels outside the classes."""
        files = f"{self.raw_dir}/{split}-images-idx3-ubyte and {split}-labels-idx1-ubyte"
        problem = None
        if len(images) != len(labels):
            problem = f"{len(images)} images but {len(labels)} labels"
        elif tuple(images.shape[1:]) != self.input_shape[1:]:
            problem = f"images of {tuple(images.shape[1:])} pixels, not {self.input_shape[1:]}"
        elif len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes:
            bad = labels[(labels < 0) | (labels >= self.num_classes)][0]
            problem = f"label {int(bad)} is not one of the classes 0..{self.num_classes - 1}"
        if problem:
            raise LossbenchError(
                f"the {self.source.__name__} files {files} disagree: {problem}. Fix: delete "
                f"{self.raw_dir} and let lossbench download or unpack them again"
            )

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        self.prepare_data()
        return self.with_val(self._read(train=True), self._read(train=False))


@DATASETS.register("mnist")
class MNIST(TorchvisionImages):
    """Handwritten digits 0–9 (LeCun et al. 1998), ``torchvision.datasets.MNIST``."""

    source = datasets.MNIST


@DATASETS.register("fashion_mnist")
class FashionMNIST(TorchvisionImages):
    """Zalando's 10 clothing classes (Xiao et al. 2017), ``torchvision.datasets.FashionMNIST``."""

    source = datasets.FashionMNIST
