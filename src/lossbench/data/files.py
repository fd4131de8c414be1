"""Your own images: a folder per class (``image_folder``) or a CSV manifest (``image_csv``).

Both list ``(file, target)`` pairs per split and decode them with the same per-sample code
(:class:`ImageFiles`: PIL, resized to ``image_size``), either all at
once into memory (cached as tensors, keyed by the files' names, sizes and times) or per batch in
DataLoader workers when the decoded set would not fit (``in_memory=auto|true|false``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from lossbench.data.base import DATASETS, SPLITS, ClassificationData, carve, count
from lossbench.data.images import writable
from lossbench.errors import LossbenchError, check_range
from lossbench.heads import Task

IN_MEMORY_LIMIT = 2 * 1024**3  # in_memory=auto: decoded sets up to 2 GiB stay in memory
MODES = {1: "L", 3: "RGB"}  # PIL's modes for gray and colour


class ImageFiles(Dataset):
    """``i -> (uint8 image (channels, size, size), target)``, decoded from ``paths[i]`` by PIL
    (as torchvision's ``ImageFolder`` does), converted to gray or RGB, resized (antialiased)."""

    def __init__(
        self, paths: Sequence[Path], targets: Tensor, channels: int, size: int | None
    ) -> None:
        self.paths, self.targets, self.channels, self.size = list(paths), targets, channels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        from torchvision.transforms.v2 import functional as TF  # not for runs on other data

        path = self.paths[i]
        try:
            with Image.open(path) as pil:
                image = TF.pil_to_tensor(pil.convert(MODES[self.channels]))
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise LossbenchError(
                f"the image {path} cannot be decoded ({err}). Fix: replace or remove that file"
            ) from None
        if self.size is not None and tuple(image.shape[1:]) != (self.size, self.size):
            image = TF.resize(image, [self.size, self.size], antialias=True)
        return image, self.targets[i]


class ImageSet(ClassificationData):
    """Images listed per split as files and targets; subclasses implement :meth:`listing`."""

    streams = True

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int,
        image_size: int | None,
        channels: int,
        val_size: float,
        test_size: float,
        split_seed: int,
        in_memory: bool | str,
        num_workers: int,
        mean: float | Sequence[float] | None,
        std: float | Sequence[float] | None,
        stratify: bool = True,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(data_dir, batch_size, shuffle_seed, mean, std)
        self.stratify = stratify
        if channels not in MODES:
            raise LossbenchError(
                f"dataset.channels={channels} is out of range: it must be 1 (gray) or 3 "
                "(colour). Fix: `dataset.channels=3`"
            )
        if image_size is not None:
            check_range("dataset.image_size", image_size, ge=1, example=64)
        check_range("dataset.num_workers", num_workers, ge=0, example=2)
        if in_memory not in ("auto", True, False):
            raise LossbenchError(
                f"dataset.in_memory={in_memory!r} is not one of auto, true, false. Fix: "
                "`dataset.in_memory=auto`"
            )
        self.image_size, self.channels = image_size, channels
        self.sizes, self.split_seed = (val_size, test_size), split_seed
        self.in_memory, self.num_workers = in_memory, num_workers
        self.files: dict[str, ImageFiles] = {}
        self.classes: list[str] = []

    def listing(self) -> tuple[dict[str, list[tuple[Path, Any]] | None], list[str]]:
        """``({split: [(file, labels)] or None if the set has no such split}, class names)``;
        labels: a class index (multi-class) or a list of class indices (multi-label)."""
        raise NotImplementedError

    def prepare_data(self) -> None:
        if self.files:
            return
        listed, self.classes = self.listing()
        splits = self._carve(listed)
        size = self.image_size or self._common_size(splits["train"][0][0])
        keep, targets = self.stress_targets(
            {s: self._targets(items) for s, items in splits.items()}
        )
        for split, items in splits.items():
            paths = [items[i][0] for i in keep[split].tolist()]
            self.files[split] = ImageFiles(paths, targets[split], self.channels, size)
        self._size = size
        decoded = sum(len(f) for f in self.files.values()) * self.channels * size * size
        self.stream = self.in_memory is False or (
            self.in_memory == "auto" and decoded > IN_MEMORY_LIMIT
        )

    def _carve(self, listed: dict[str, list | None]) -> dict[str, list]:
        """Missing val/test splits carved from train (fixed by ``split_seed``; stratified by
        class or by label where ``stratify``)."""
        train = listed["train"] or []
        missing = [s for s in ("val", "test") if not listed.get(s)]
        n = len(train)
        wanted = [count(self.sizes[("val", "test").index(s)], n, f"dataset.{s}_size")
                  for s in missing]  # fmt: skip
        if sum(wanted) >= n:
            raise LossbenchError(
                f"carving {', '.join(missing)} from the {n} training images leaves none to "
                "train on; lower dataset.val_size / dataset.test_size, or add val/ and test/"
            )
        labels = None
        if self.stratify:  # a class per image, or 0/1 rows of the labels
            labels = [c for _, c in train] if self.task == "multiclass" else self._targets(train)
        parts = carve(n, [*wanted, n - sum(wanted)], self.split_seed, labels)
        out = {s: listed[s] for s in SPLITS if listed.get(s)}
        for split, idx in zip([*missing, "train"], parts, strict=True):
            out[split] = [train[i] for i in idx.tolist()]
        return out

    def _common_size(self, first: Path) -> int:
        """With ``image_size=null`` every image must be square and of one size: the first's."""
        image = ImageFiles([first], torch.zeros(1), self.channels, None)[0][0]
        h, w = image.shape[1:]
        if h != w:
            raise LossbenchError(
                f"{first} is {w}x{h}: images of different or non-square sizes need "
                "dataset.image_size. Fix: set e.g. `dataset.image_size=64`"
            )
        return int(h)

    def _targets(self, items: list[tuple[Path, Any]]) -> Tensor:
        if self.task == "multiclass":
            return torch.tensor([label for _, label in items], dtype=torch.long)
        rows = torch.zeros(len(items), len(self.classes))
        for i, (_, labels) in enumerate(items):
            rows[i, labels] = 1.0
        return rows

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.channels, self._size, self._size)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return list(self.classes)

    def samples(self, split: str) -> Dataset:
        return self.files[split]

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Every image decoded once, then cached as tensors (keyed by the files' names, sizes
        and modification times, the targets and the decoding settings)."""
        key = hashlib.sha1(json.dumps([
            [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in f.paths] + [
                f.targets.tolist(), self.channels, self._size] for f in self.files.values()
        ]).encode()).hexdigest()[:16]  # fmt: skip
        cache = self.data_dir / "lossbench-cache" / f"{type(self).__name__}-{key}.pt"
        if cache.is_file():
            return torch.load(cache, weights_only=True)
        out = {}
        for split, files in self.files.items():
            images = torch.stack([files[i][0] for i in range(len(files))])
            out[split] = (images, files.targets)
        writable(cache.parent)
        torch.save(out, cache.with_suffix(".part"))
        cache.with_suffix(".part").replace(cache)
        return out


def _existing_folder(root: str | None, key: str) -> Path:
    if not root:
        raise LossbenchError(f"{key} is not set. Fix: `{key}=/path/to/your/data`")
    folder = Path(root).expanduser().resolve()
    if not folder.is_dir():
        raise LossbenchError(f"{key}={root}: there is no such folder. Fix: give an existing one")
    return folder


@DATASETS.register("image_folder")
class ImageFolder(ImageSet):
    """``root/<class>/*.png|jpg|...`` (torchvision's ``ImageFolder`` layout: every split carved
    from it), or ``root/train/<class>/...`` with optionally ``root/val/`` and ``root/test/`` of
    the same class folders (a missing split is carved from ``train/``). Class names are the
    folder names."""

    task = "multiclass"

    def __init__(self, root: str | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.root = _existing_folder(root, "dataset.root")
        splits = [s for s in SPLITS if (self.root / s).is_dir()]
        if splits and "train" not in splits:
            raise LossbenchError(
                f"dataset.root={self.root} has {'/, '.join(splits)}/ but no train/ folder. Fix: "
                f"put the training images in {self.root}/train/<class name>/"
            )
        self.train_dir = self.root / "train" if splits else self.root  # else: classes at root

    @property
    def origin(self) -> str:
        return str(self.root)

    def listing(self) -> tuple[dict[str, list | None], list[str]]:
        layout = (
            f"{self.root}/<class name>/ (one folder per class), or "
            f"{self.root}/train/<class name>/ with optional val/ and test/ beside it"
        )
        try:
            classes, index = find_classes(str(self.train_dir))
        except FileNotFoundError:
            raise LossbenchError(
                f"{self.train_dir}/ has no class folder. Fix: put the images in {layout}"
            ) from None
        out: dict[str, list | None] = dict.fromkeys(SPLITS)
        folders = {s: self.root / s for s in SPLITS} if self.train_dir != self.root else {
            "train": self.root}  # fmt: skip
        for split, folder in folders.items():
            if not folder.is_dir():
                continue
            extra = set(find_classes(str(folder))[0]) - set(classes)
            if extra:
                raise LossbenchError(
                    f"{folder} has class folders that train/ lacks: {', '.join(sorted(extra))}. "
                    "Fix: give every class training images, or remove those folders"
                )
            found = make_dataset(str(folder), index, IMG_EXTENSIONS, allow_empty=True)
            out[split] = [(Path(p), c) for p, c in found]
        if not out["train"]:
            raise LossbenchError(
                f"{self.train_dir}/ holds no image ({', '.join(IMG_EXTENSIONS)}) in a class "
                f"folder. Fix: put the images in {layout}"
            )
        if len({c for _, c in out["train"]}) < 2:
            raise LossbenchError(
                f"{self.train_dir}/ has images of one class only ({classes[out['train'][0][1]]}):"
                f" a classifier needs at least 2. Fix: put the images in {layout}"
            )
        return out, classes


def read_manifest(csv: str | None, path_column: str, labels_column: str, split_column: str):
    """The manifest as a DataFrame, refused with the columns it has if one is missing."""
    if not csv:
        raise LossbenchError("dataset.csv is not set. Fix: `dataset.csv=/path/to/images.csv`")
    path = Path(csv).expanduser().resolve()
    if not path.is_file():
        raise LossbenchError(f"dataset.csv={csv}: there is no such file. Fix: give its path")
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise LossbenchError(f"{path} cannot be read as CSV ({err}). Fix: save it as CSV") from None
    for key, column in (("path_column", path_column), ("labels_column", labels_column)):
        if column not in table.columns:
            raise LossbenchError(
                f"{path} has no column {column!r} (dataset.{key}); its columns: "
                f"{', '.join(table.columns)}. Fix: set dataset.{key} to one of them"
            )
    if split_column in table.columns:
        bad = sorted(set(table[split_column]) - set(SPLITS))
        if bad:
            raise LossbenchError(
                f"{path}: column {split_column!r} holds {', '.join(map(repr, bad))}; a split is "
                "train, val or test. Fix: correct those rows"
            )
    return path, table


@DATASETS.register("image_csv")
class ImageCSV(ImageSet):
    """A CSV manifest: a ``path`` column (relative to ``root``, default the CSV's folder), a
    ``labels`` column of ``separator``-separated label names (or integers), and an optional
    ``split`` column (train/val/test; missing splits carved). Multi-label when any row has two
    labels, unless ``task`` says."""

    def __init__(
        self,
        csv: str | None = None,
        root: str | None = None,
        path_column: str = "path",
        labels_column: str = "labels",
        separator: str = "|",
        split_column: str = "split",
        task: str | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.csv, self.table = read_manifest(csv, path_column, labels_column, split_column)
        self.root = _existing_folder(root, "dataset.root") if root else self.csv.parent
        self.columns = (path_column, labels_column, split_column)
        self.separator = separator
        self.task = self.task_of({"csv": csv, "path_column": path_column, "task": task,
                                  "labels_column": labels_column, "separator": separator,
                                  "split_column": split_column})  # fmt: skip

    @classmethod
    def task_of(cls, params: dict[str, Any]) -> Task:
        if params.get("task") is not None:
            if params["task"] not in ("multiclass", "multilabel"):
                raise LossbenchError(
                    f"dataset.task={params['task']!r} is not one of multiclass, multilabel, "
                    "null (from the data). Fix: `dataset.task=null`"
                )
            return params["task"]
        _, table = read_manifest(params.get("csv"), params.get("path_column", "path"),
                                 params.get("labels_column", "labels"),
                                 params.get("split_column", "split"))  # fmt: skip
        labels = table[params.get("labels_column", "labels")]
        many = labels.str.split(params.get("separator", "|")).map(len) > 1
        return "multilabel" if bool(many.any()) else "multiclass"

    @property
    def origin(self) -> str:
        return str(self.csv)

    def listing(self) -> tuple[dict[str, list | None], list[str]]:
        path_col, labels_col, split_col = self.columns
        names = [[x.strip() for x in v.split(self.separator) if x.strip()]
                 for v in self.table[labels_col]]  # fmt: skip
        found = sorted({n for row in names for n in row})
        numeric = all(n.lstrip("-").isdigit() for n in found)
        classes = sorted(found, key=int) if numeric else found
        index = {c: i for i, c in enumerate(classes)}
        listed: dict[str, list] = {}
        has_split = split_col in self.table.columns
        for row, (file, labels) in enumerate(zip(self.table[path_col], names, strict=True)):
            path = (self.root / file).resolve()
            line = row + 2  # the header is line 1
            if not path.is_file():
                raise LossbenchError(
                    f"{self.csv}, line {line}: the image {path} does not exist. Fix: correct "
                    f"the path (relative to dataset.root={self.root}) or remove the row"
                )
            if self.task == "multiclass" and len(labels) != 1:
                raise LossbenchError(
                    f"{self.csv}, line {line}: {len(labels)} labels on a multi-class set "
                    "(dataset.task=multiclass). Fix: one label per row, or dataset.task=null"
                )
            split = self.table[split_col].iloc[row] if has_split else "train"
            target = index[labels[0]] if self.task == "multiclass" else [index[n] for n in labels]
            listed.setdefault(split, []).append((path, target))
        if not listed.get("train"):
            raise LossbenchError(f"{self.csv} lists no training image. Fix: add rows")
        return {s: listed.get(s) for s in SPLITS}, classes
