"""Multi-label images: canvases holding 1 to k MNIST / Fashion-MNIST items at random places.

The target is the multi-hot set of the classes present. Canvases of each split are drawn from
the same split of the source set (train from train, val from val, test from test), so no
source image crosses splits; everything is fixed by ``seed`` (and the source's ``split_seed``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from lossbench.data.base import DATASETS, ClassificationData
from lossbench.data.images import MNIST, FashionMNIST, TorchvisionImages
from lossbench.errors import LossbenchError, check_range

SPLITS = ("train", "val", "test")


def compose_canvases(
    images: Tensor,
    labels: Tensor,
    n: int,
    size: int,
    max_items: int,
    num_classes: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """``n`` canvases (n, 1, size, size) uint8, each the pixel-wise max of 1..max_items source
    images (N, 1, h, w) pasted at uniform random offsets; and their multi-hot targets."""
    h, w = images.shape[-2:]
    counts = torch.randint(1, max_items + 1, (n,), generator=generator)
    picks = torch.randint(0, len(images), (n, max_items), generator=generator)
    tops = torch.randint(0, size - h + 1, (n, max_items), generator=generator)
    lefts = torch.randint(0, size - w + 1, (n, max_items), generator=generator)
    canvases = torch.zeros(n, size, size, dtype=torch.uint8)
    targets = torch.zeros(n, num_classes)
    every = torch.arange(n)
    for slot in range(max_items):
        active = counts > slot
        item = images[picks[:, slot], 0] * active[:, None, None].to(torch.uint8)
        rows = (tops[:, slot, None] + torch.arange(h))[:, :, None]  # (n, h, 1)
        cols = (lefts[:, slot, None] + torch.arange(w))[:, None, :]  # (n, 1, w)
        region = canvases[every[:, None, None], rows, cols]
        canvases[every[:, None, None], rows, cols] = torch.maximum(region, item)
        targets[every[active], labels[picks[active, slot]]] = 1.0
    return canvases.unsqueeze(1), targets


class Canvases(ClassificationData):
    """Multi-label canvases over a torchvision MNIST-format source set."""

    task = "multilabel"
    source_cls: ClassVar[type[TorchvisionImages]]

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int,
        canvas: int,
        max_items: int,
        n_train: int,
        n_val: int,
        n_test: int,
        seed: int,
        mean: float,
        std: float,
        shuffle_seed: int = 0,
        **source: Any,
    ) -> None:
        """``source``: the source set's own keys (``val_size``, ``split_seed``, ``download``,
        ``system_dir``), passed through to it unchanged."""
        super().__init__(data_dir, batch_size, shuffle_seed, mean, std)
        self.source = self.source_cls(
            data_dir=data_dir, batch_size=batch_size, mean=0.0, std=1.0, **source
        )
        if canvas < 28 or max_items < 1:
            raise LossbenchError(
                f"dataset.canvas={canvas} and dataset.max_items={max_items}: a canvas needs "
                "canvas >= 28 (the item size) and max_items >= 1; e.g. canvas=56 max_items=3"
            )
        for split, n in zip(SPLITS, (n_train, n_val, n_test), strict=True):
            check_range(f"dataset.n_{split}", n, ge=1, example=1000)
        self.canvas, self.max_items, self.seed = canvas, max_items, seed
        self.sizes = dict(zip(SPLITS, (n_train, n_val, n_test), strict=True))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.canvas, self.canvas)

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    def prepare_data(self) -> None:
        self.source.prepare_data()

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        sources = self.source.load_splits()
        out = {}
        for i, split in enumerate(SPLITS):
            generator = torch.Generator().manual_seed(self.seed * len(SPLITS) + i)
            out[split] = compose_canvases(
                *sources[split],
                self.sizes[split],
                self.canvas,
                self.max_items,
                self.num_classes,
                generator,
            )
        return out


@DATASETS.register("mnist_multilabel")
class MNISTCanvases(Canvases):
    """Canvases of MNIST digits: which digits are on the image?"""

    source_cls = MNIST


@DATASETS.register("fashion_mnist_multilabel")
class FashionMNISTCanvases(Canvases):
    """Canvases of Fashion-MNIST items (works offline with Debian's copy)."""

    source_cls = FashionMNIST
