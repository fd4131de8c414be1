"""Tables: your own CSV or Parquet file (``table``), and the MULAN yeast multi-label benchmark
(``yeast``). A text feature column is one-hot encoded (its categories: the values of the training
split); an empty cell is refused, or with ``missing=impute`` filled (below); then every feature
is standardised with the training split's mean and std. Held in memory as float32 tensors."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from lossbench.data.base import (
    DATASETS,
    SPLITS,
    ClassificationData,
    carve,
    count,
    split_indices,
)
from lossbench.errors import LossbenchError
from lossbench.heads import Task

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pandas and scikit-learn are imported by the table datasets alone
    import pandas as pd


def delimiter_of(path: Path) -> str:
    """A CSV's delimiter, sniffed from its first lines by the standard library's ``csv.Sniffer``
    among ``, ; tab |``; a comma where it cannot tell."""
    import csv
    import gzip

    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", errors="replace") as f:
        head = f.read(1 << 16)
    if len(head) == 1 << 16:
        head = head.rsplit("\n", 1)[0]  # whole lines only
    try:
        return csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


DECIMAL_COMMA = r"[-+]?\d*,\d+"  # 1,5: a decimal comma (a spreadsheet's CSV with ; between cells)


def read_table(path: Path) -> pd.DataFrame:
    """A CSV (also gzipped; cells separated by ``,``, ``;``, tabs or ``|``) or Parquet file as a
    DataFrame. A file with ``;`` between cells whose text columns are numbers with decimal
    commas (``1,5``: a spreadsheet's export in many locales) is read with ``decimal=","``."""
    import pandas as pd
    from pandas.api.types import is_numeric_dtype

    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        sep = delimiter_of(path)
        frame = pd.read_csv(path, sep=sep)
        text = [frame[c].dropna().astype(str) for c in frame if not is_numeric_dtype(frame[c])]
        if sep == ";" and any(len(t) and t.str.fullmatch(DECIMAL_COMMA).all() for t in text):
            frame = pd.read_csv(path, sep=sep, decimal=",")
        return frame
    except (ValueError, OSError, UnicodeDecodeError, ImportError) as err:
        raise LossbenchError(
            f"{path} cannot be read as CSV or Parquet ({err}). Fix: save it as .csv or .parquet"
        ) from None


def first_empty(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[int, str] | None:
    """The first empty (NaN) cell among ``columns``: its 1-based row and its column; None if
    there is none."""
    empty = frame[list(columns)].isna().to_numpy()
    if not empty.any():
        return None
    row, col = np.argwhere(empty)[0]
    return int(row) + 1, columns[col]


MAX_CATEGORIES = 100  # distinct values of a text column one-hot encoded; more: an id or free text
MISSING = "<missing>"  # missing=impute: an empty text cell's category; `c=<missing>`: indicators


def text_of(column: pd.Series) -> pd.Series:
    """A text column's values as strings, an empty cell as :data:`MISSING` (not ``"nan"``)."""
    return column.where(column.notna(), MISSING).astype(str)


def categories_of(
    frame: pd.DataFrame, columns: Sequence[str], train: np.ndarray, path: Path
) -> dict[str, list[str]]:
    """The categories of each text (non-numeric) column among ``columns``: its distinct values in
    the ``train`` rows, sorted. Refused: a column of mostly numbers (a stray text value such as
    ``"1,5"``, or numbers stored as text), and one of more than :data:`MAX_CATEGORIES` values."""
    import pandas as pd
    from pandas.api.types import is_numeric_dtype

    found = {}
    for c in columns:
        if is_numeric_dtype(frame[c]):
            continue
        values = text_of(frame[c])
        numbers = pd.to_numeric(values, errors="coerce")
        if (numbers.notna() | values.str.fullmatch(r"[-+]?\d[\d.,]*")).mean() > 0.5:
            odd = values[numbers.isna()]
            what = (f"numbers and text such as {odd.iloc[0]!r}" if len(odd) else
                    f"numbers stored as text ({values.iloc[0]!r})")  # fmt: skip
            raise LossbenchError(
                f"{path}: feature column {c!r} holds {what}. Fix: write every value as a number "
                "(a decimal point, no thousands separator), or drop those rows"
            )
        found[c] = sorted(values.iloc[train].unique())
        if len(found[c]) > MAX_CATEGORIES:
            raise LossbenchError(
                f"{path}: text feature column {c!r} has {len(found[c])} distinct values in the "
                f"training split (at most {MAX_CATEGORIES} are one-hot encoded): an id or free "
                f"text? Fix: leave it out with `dataset.ignore_columns=[{c}]`, or encode it as "
                "numbers"
            )
    return found


def fill_values(
    frame: pd.DataFrame, columns: Sequence[str], categories: dict[str, list[str]],
    train: np.ndarray, path: Path,
) -> tuple[dict[str, float], list[str]]:  # fmt: skip
    """``missing=impute``: ``(fill, indicate)``, each numeric column's median over the training
    split (what fills its empty cells, in every split and in ``lossbench.predict``) and the
    numeric columns with an empty cell in the training split, which get a 0/1 indicator column
    ``c=<missing>``: scikit-learn's ``SimpleImputer(strategy="median", add_indicator=True)``.
    An empty text cell is a category of its own (:data:`MISSING`, in :func:`categories_of`)."""
    fill, indicate = {}, []
    for c in columns:
        if c in categories:
            continue
        seen = frame[c].iloc[train]
        if seen.isna().all():
            raise LossbenchError(
                f"{path}: feature column {c!r} is empty in every training row, so nothing can "
                f"fill it. Fix: leave it out with `dataset.ignore_columns=[{c}]`"
            )
        fill[str(c)] = float(seen.median())
        if seen.isna().any():
            indicate.append(str(c))
    return fill, indicate


def encode(
    frame: pd.DataFrame,
    columns: Sequence[str],
    categories: dict[str, list[str]],
    fill: dict[str, float] | None = None,
    indicate: Sequence[str] = (),
) -> tuple[np.ndarray, list[str]]:
    """``(x, names)``: the numeric columns as they are (an empty cell: its ``fill`` value,
    followed by a 0/1 column ``c=<missing>`` for the columns in ``indicate``) and each text
    column as one 0/1 column per category (``color=red``), in the columns' order; a value outside
    the categories is all 0."""
    parts, names = [], []
    for c in columns:
        if c in categories:
            values = text_of(frame[c]).to_numpy()
            parts.append(np.stack([values == v for v in categories[c]], axis=1).astype(float))
            names += [f"{c}={v}" for v in categories[c]]
            continue
        raw = frame[c].to_numpy(dtype=np.float64)
        empty = np.isnan(raw)
        parts.append(np.where(empty, fill[c], raw)[:, None] if fill else raw[:, None])
        names.append(str(c))
        if c in indicate:
            parts.append(empty[:, None].astype(float))
            names.append(f"{c}={MISSING}")
    return np.concatenate(parts, axis=1), names


@DATASETS.register("table")
class Table(ClassificationData):
    """A CSV or Parquet file (``path``): one row per sample, feature columns (numbers, or text:
    one-hot encoded), and either ``label_column`` (one label per row: multi-class; any values,
    their sorted distinct values are the classes) or ``label_columns`` (0/1 columns:
    multi-label). An optional ``split`` column (train/val/test) fixes the splits; missing ones
    are carved from train by ``split_seed``. ``feature_columns`` null: every other column but
    those in ``ignore_columns`` (an id, a date, a leak of the label).
    ``missing``: ``refuse`` an empty feature cell (naming it), or ``impute`` it
    (:func:`fill_values`)."""

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int,
        path: str | None = None,
        label_column: str | None = None,
        label_columns: Sequence[str] | None = None,
        feature_columns: Sequence[str] | None = None,
        ignore_columns: Sequence[str] = (),
        missing: Literal["refuse", "impute"] = "refuse",
        split_column: str = "split",
        val_size: float = 0.1,
        test_size: float = 0.2,
        split_seed: int = 0,
        stratify: bool = True,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__(data_dir, batch_size, shuffle_seed)
        self.stratify = stratify
        self.task = self.task_of({"label_column": label_column, "label_columns": label_columns})
        if not path:
            raise LossbenchError("dataset.path is not set. Fix: `dataset.path=/path/to/data.csv`")
        self.path = Path(path).expanduser().resolve()
        if not self.path.is_file():
            raise LossbenchError(f"dataset.path={path}: there is no such file. Fix: give its path")
        if missing not in ("refuse", "impute"):
            raise LossbenchError(
                f"dataset.missing={missing!r} is not one of refuse, impute. Fix: "
                "`dataset.missing=impute` fills empty feature cells (a numeric column's training "
                "median and a `c=<missing>` indicator; a text column's own `<missing>` category)"
            )
        self.missing = missing
        self.labels = [label_column] if label_column else list(label_columns or [])
        self.features = list(feature_columns) if feature_columns else None
        self.ignored = list(ignore_columns)
        self.split_column, self.sizes, self.split_seed = (
            split_column,
            (val_size, test_size),
            split_seed,
        )
        self.classes: list[str] = []
        self.inputs: list[str] = []  # the feature columns as the file has them
        self.categories: dict[str, list[str]] = {}  # text feature column -> its categories
        self.fill: dict[str, float] = {}  # missing=impute: numeric column -> its fill value
        self.indicate: list[str] = []  # missing=impute: numeric columns given c=<missing>
        self._width = 0

    @classmethod
    def task_of(cls, params: dict[str, Any]) -> Task:
        one, many = params.get("label_column"), params.get("label_columns")
        if bool(one) == bool(many):
            raise LossbenchError(
                "give exactly one of dataset.label_column (one label per row) and "
                "dataset.label_columns (0/1 columns, multi-label). Fix: e.g. "
                "`dataset.label_column=species`"
            )
        return "multilabel" if many else "multiclass"

    @property
    def origin(self) -> str:
        return str(self.path)

    @property
    def input_shape(self) -> tuple[int, ...]:
        if not self._width:
            self.load_splits()
        return (self._width,)

    @property
    def num_classes(self) -> int:
        if not self.classes:
            self.load_splits()
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return list(self.classes)

    def frame(self) -> pd.DataFrame:
        return read_table(self.path)

    def preprocessing(self) -> dict[str, Any]:
        """The feature columns' names, mean and scale after encoding; with text columns, also the
        file's columns (``inputs``) and their ``categories``, which ``lossbench.predict`` encodes
        as in training."""
        spec = super().preprocessing()
        if self.categories or self.fill:
            spec.update(inputs=self.inputs, categories=self.categories)
        if self.fill:
            spec.update(fill=self.fill, indicate=self.indicate)
        return spec

    def split_of(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Row indices per split: the split column's, with missing splits carved from train
        (stratified by class or by label where ``stratify``)."""
        n = len(frame)
        if self.split_column in frame.columns:
            values = frame[self.split_column].astype(str)
            bad = sorted(set(values) - set(SPLITS))
            if bad:
                raise LossbenchError(
                    f"{self.path}: column {self.split_column!r} holds {', '.join(bad)}; a split "
                    "is train, val or test. Fix: correct those rows"
                )
            given = {s: np.flatnonzero(values.to_numpy() == s) for s in SPLITS}
        else:
            given = {"train": np.arange(n), "val": np.array([], int), "test": np.array([], int)}
        train = given["train"]
        missing = [s for s in ("val", "test") if not len(given[s])]
        wanted = [count(self.sizes[("val", "test").index(s)], len(train), f"dataset.{s}_size")
                  for s in missing]  # fmt: skip
        if sum(wanted) >= len(train):
            raise LossbenchError(
                f"{self.path}: carving {', '.join(missing)} from {len(train)} training rows "
                "leaves none to train on; lower dataset.val_size / dataset.test_size"
            )
        labels = None
        if self.stratify and self.task == "multiclass":
            labels = frame[self.labels[0]].astype(str).to_numpy()[train]
        elif self.stratify:  # the 0/1 label columns (checked)
            labels = self._targets(frame).numpy()[train]
        parts = carve(len(train), [*wanted, len(train) - sum(wanted)], self.split_seed, labels)
        for split, idx in zip([*missing, "train"], parts, strict=True):
            given[split] = train[idx.numpy()]
        return given

    def load_splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        frame = self.frame()
        named = self.labels + (self.features or []) + self.ignored
        unknown = [c for c in named if c not in frame.columns]
        if unknown:
            raise LossbenchError(
                f"{self.path} has no column {', '.join(map(repr, unknown))}; its columns: "
                f"{', '.join(map(str, frame.columns))}. Fix: name columns it has"
            )
        rows = self.split_of(frame)
        skip = {*self.labels, self.split_column}
        features = self.features or [c for c in frame.columns if c not in skip]
        features = [c for c in features if c not in self.ignored]
        if not features:
            raise LossbenchError(f"{self.path} has no feature column. Fix: add feature columns")
        from sklearn.preprocessing import StandardScaler

        empty = first_empty(frame, features)
        if empty is not None and self.missing == "refuse":
            raise LossbenchError(
                f"{self.path}: row {empty[0]}, column {empty[1]!r} is empty or NaN. Fix: "
                "fill or drop the rows with missing values, or `dataset.missing=impute`"
            )
        self.inputs = list(features)
        self.categories = categories_of(frame, features, rows["train"], self.path)
        if self.missing == "impute":
            self.fill, self.indicate = fill_values(
                frame, features, self.categories, rows["train"], self.path
            )
            if empty is not None:
                cells = frame[features].isna().sum()
                where = ", ".join(f"{c} {n}" for c, n in cells.items() if n)
                log.info("%s: %d empty cells filled (dataset.missing=impute): %s",
                         self.path.name, int(cells.sum()), where)  # fmt: skip
        x, names = encode(frame, features, self.categories, self.fill, self.indicate)
        y = self._targets(frame)
        scaler = StandardScaler().fit(x[rows["train"]])
        self._width = x.shape[1]
        self.feature_stats = (names, scaler.mean_.tolist(), scaler.scale_.tolist())
        return {
            s: (torch.tensor(scaler.transform(x[idx]), dtype=torch.float32), y[idx])
            for s, idx in rows.items()
        }

    def _targets(self, frame: pd.DataFrame) -> Tensor:
        if self.task == "multiclass":
            values = frame[self.labels[0]]
            if values.isna().any():
                raise LossbenchError(
                    f"{self.path}: row {int(np.flatnonzero(values.isna())[0]) + 1}, label column "
                    f"{self.labels[0]!r} is empty. Fix: fill it, or drop the rows without a label"
                )
            if values.nunique() < 2:
                raise LossbenchError(
                    f"{self.path}: label column {self.labels[0]!r} holds one value "
                    f"({values.iloc[0]}): a classifier needs at least 2 classes. Fix: name the "
                    "column that holds the classes"
                )
            self.classes = [str(v) for v in sorted(values.unique())]
            index = {v: i for i, v in enumerate(sorted(values.unique()))}
            return torch.tensor(values.map(index).to_numpy(), dtype=torch.long)
        block = frame[self.labels]
        bad = [c for c in self.labels if not block[c].isin([0, 1]).all()]
        if bad:
            raise LossbenchError(
                f"{self.path}: label column {bad[0]!r} holds values other than 0 and 1. Fix: "
                "one 0/1 column per label for dataset.label_columns"
            )
        self.classes = list(self.labels)
        return torch.tensor(block.to_numpy(dtype=np.float32))


YEAST_TEST_ROWS = 917  # MULAN's split: the first 917 rows are its test set, the other 1,500 train


@DATASETS.register("yeast")
class Yeast(Table):
    """Yeast gene functions (Elisseeff & Weston 2001, "A kernel method for multi-labelled
    classification", NIPS; MULAN's copy, Tsoumakas et al. 2011): 2,417 genes × 103
    micro-array and phylogenetic features, 14 functional classes, multi-label. MULAN's standard
    split, 1,500 train / 917 test; validation is carved from the 1,500 (``val_size``).

    Read offline from the copy inside the PyPI package ``river`` (``river/datasets/yeast.csv.gz``,
    the MULAN version; its first 917 rows are MULAN's test set): ``pip install river``, which
    ``.[dev]`` and ``.[datasets]`` install; river itself is not imported.
    """

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int,
        val_size: float = 0.2,
        split_seed: int = 0,
        shuffle_seed: int = 0,
    ) -> None:
        spec = importlib.util.find_spec("river")
        if spec is None or not spec.submodule_search_locations:
            raise LossbenchError(
                "dataset=yeast reads the copy inside the Python package river, which is not "
                "installed. Fix: `pip install river` (or `pip install -e '.[datasets]'`)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "yeast.csv.gz"
        labels = [f"Class{i}" for i in range(1, 15)]
        super().__init__(data_dir, batch_size, str(path), label_columns=labels,
                         split_column="", val_size=val_size, test_size=0.0,
                         split_seed=split_seed, shuffle_seed=shuffle_seed)  # fmt: skip

    @classmethod
    def task_of(cls, params: dict[str, Any]) -> Task:
        return "multilabel"

    def split_of(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        if len(frame) != 2417:
            raise LossbenchError(
                f"{self.path} has {len(frame)} rows, not MULAN's 2,417. Fix: reinstall river"
            )
        test, train = np.arange(YEAST_TEST_ROWS), np.arange(YEAST_TEST_ROWS, len(frame))
        n_val = count(self.sizes[0], len(train), "dataset.val_size")
        val, rest = split_indices(len(train), [n_val, len(train) - n_val], self.split_seed)
        return {"train": train[rest.numpy()], "val": train[val.numpy()], "test": test}
