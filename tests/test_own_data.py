"""The user's own data and the real benchmarks, through their real loaders, on files written here
in the real on-disk formats (PNG/JPEG folders, a CSV manifest, CSV and Parquet tables, CIFAR's
pickled batches, SVHN's .mat files), and a real training run of each kind through train.py."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from conftest import compose_cfg, run_train, sqlite_uri
from lossbench.data import make_datamodule
from lossbench.data.archives import decode_cifar, decode_svhn
from lossbench.data.base import split_indices
from lossbench.errors import LossbenchError
from lossbench.training import run

CLASSES = ("cat", "dog", "emu")
FOLDER = dict(batch_size=8, image_size=16, channels=3, val_size=0.25, test_size=0.25,
              split_seed=0, in_memory="auto", num_workers=0, mean=None, std=None)  # fmt: skip


def picture(rng: np.random.Generator, label: int, size: tuple[int, int], gray: bool) -> Image:
    """An image whose colour says its class (learnable), of any size, gray or colour."""
    base = np.zeros((*size[::-1], 3), np.uint8)
    base[..., label] = 200
    noisy = np.clip(base + rng.integers(0, 50, base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(noisy)
    return image.convert("L") if gray else image


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> Path:
    """A folder set (train/ and test/, PNG and JPEG, mixed sizes, some gray), a multi-label CSV
    manifest over the same files, and a table as CSV and Parquet."""
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    rows = []
    for split, n in (("train", 12), ("test", 4)):
        for label, name in enumerate(CLASSES):
            folder = root / "folders" / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                suffix = ".png" if i % 2 else ".jpg"
                size = (20 + i, 18) if i % 3 else (16, 16)
                path = folder / f"{i}{suffix}"
                picture(rng, label, size, gray=i % 4 == 0).save(path)
                second = CLASSES[(label + 1) % 3] if i % 3 == 0 else None
                labels = name if second is None else f"{name}|{second}"
                rows.append({"path": str(path.relative_to(root / "folders")), "labels": labels,
                             "split": split if split == "test" else ""})  # fmt: skip
    manifest = pd.DataFrame(rows)
    manifest["split"] = manifest["split"].replace("", "train")
    manifest.to_csv(root / "folders" / "manifest.csv", index=False)
    n = 120
    label = rng.integers(0, 3, n)
    table = pd.DataFrame({
        "a": rng.normal(size=n) + label, "b": rng.normal(size=n) * 10,
        "species": [CLASSES[k] for k in label],
        "tag_x": (label == 0).astype(int), "tag_y": (label > 0).astype(int),
    })  # fmt: skip
    table.to_csv(root / "table.csv", index=False)
    table.to_parquet(root / "table.parquet")
    return root


def folder_data(root: Path, **overrides):
    data = make_datamodule("image_folder", root / "data", root=str(root / "folders"),
                           **{**FOLDER, **overrides})  # fmt: skip
    data.prepare_data()
    data.setup()
    return data


def test_image_folder_layout_sizes_and_class_names(own: Path) -> None:
    data = folder_data(own)
    assert data.class_names == list(CLASSES) and data.input_shape == (3, 16, 16)
    sizes = {k: len(v) for k, v in data.splits.items()}
    assert sizes == {"train": 27, "val": 9, "test": 12}  # test/ given; val carved: 36 × 0.25
    x, y = data.splits["test"].tensors
    assert x.dtype == torch.uint8 and y.tolist() == sorted(y.tolist())  # test/ in folder order
    from torchvision.transforms.v2 import functional as TF

    first = Image.open(own / "folders" / "test" / "cat" / "0.jpg").convert("RGB")
    want = TF.resize(TF.pil_to_tensor(first), [16, 16], antialias=True)
    assert torch.equal(x[0], want)
    assert data.origin == str(own / "folders")


def test_image_folder_of_class_folders_alone_carves_every_split(own: Path) -> None:
    """torchvision's ImageFolder layout, ``root/<class>/``: val and test carved from it."""
    root = own / "folders" / "train"
    data = make_datamodule("image_folder", own / "data", root=str(root), **FOLDER)
    data.prepare_data()
    data.setup()
    assert data.class_names == list(CLASSES)
    sizes = {k: len(v) for k, v in data.splits.items()}
    files = [f for f in root.rglob("*") if f.suffix in (".png", ".jpg")]
    assert sum(sizes.values()) == len(files) == 36
    assert sizes["test"] == 9 and sizes["val"] == 9  # val_size, test_size: 0.25 of 36
    counts = torch.bincount(torch.cat([d.tensors[1] for d in data.splits.values()]))
    assert counts.tolist() == [sum(f.parent.name == c for f in files) for c in CLASSES]
    for split in ("val", "test"):  # 12 images per class: stratified, 3 of each in 9
        assert torch.bincount(data.splits[split].tensors[1]).tolist() == [3, 3, 3]


def test_streamed_and_in_memory_give_the_same_batches(own: Path) -> None:
    memory = folder_data(own, in_memory=True)
    streamed = folder_data(own, in_memory=False, num_workers=2)
    assert not memory.stream and streamed.stream
    for a, b in zip(memory.train_dataloader(), streamed.train_dataloader(), strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.allclose(*(torch.tensor(d.measure()[0]) for d in (memory, streamed)))


def test_streamed_and_in_memory_train_to_the_same_losses(own: Path, tmp_path: Path) -> None:
    histories = []
    for mode in ("true", "false"):
        cfg = compose_cfg([
            "dataset=image_folder", f"dataset.root={own / 'folders'}", "dataset.image_size=16",
            f"dataset.in_memory={mode}", "dataset.num_workers=1", "dataset.batch_size=8",
            f"data_dir={own / 'data'}", "model=cnn", "trainer.max_epochs=2",
            "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "progress_bar=log",
            f"logger.tracking_uri={sqlite_uri(tmp_path / 'mlflow.db')}",
        ], tmp_path / mode)  # fmt: skip
        run_id = run.train(cfg)
        client = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
        histories.append([m.value for m in client.get_metric_history(run_id, "train/loss")])
    assert len(histories[0]) > 3
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)


def test_image_csv_multilabel_from_the_data(own: Path) -> None:
    data = make_datamodule("image_csv", own / "data", csv=str(own / "folders" / "manifest.csv"),
                           **FOLDER)  # fmt: skip
    assert data.task == "multilabel"
    data.prepare_data()
    data.setup()
    assert data.class_names == list(CLASSES)
    sizes = {k: len(v) for k, v in data.splits.items()}
    assert sizes["test"] == 12 and sizes["train"] + sizes["val"] == 36  # split column given
    manifest = pd.read_csv(own / "folders" / "manifest.csv")
    rows = manifest[manifest.split == "test"]
    y = data.splits["test"].tensors[1]
    for target, labels in zip(y, rows["labels"], strict=True):
        assert [CLASSES[i] for i in target.nonzero().flatten().tolist()] == sorted(
            labels.split("|"), key=CLASSES.index)  # fmt: skip


def test_image_csv_with_integer_labels_is_multiclass(own: Path, tmp_path: Path) -> None:
    manifest = pd.read_csv(own / "folders" / "manifest.csv")
    manifest["labels"] = manifest["labels"].str.split("|").str[0].map(CLASSES.index) * 5
    path = own / "folders" / "single.csv"
    manifest.drop(columns="split").to_csv(path, index=False)
    data = make_datamodule("image_csv", tmp_path, csv=str(path), **FOLDER)
    assert data.task == "multiclass"
    data.prepare_data()
    data.setup()
    assert data.class_names == ["0", "5", "10"]  # integers, in numeric order
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 24, "val": 12, "test": 12}


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_table_multiclass_and_multilabel(own: Path, suffix: str) -> None:
    path = str(own / f"table.{suffix}")
    data = make_datamodule("table", own, batch_size=16, path=path, label_column="species")
    data.setup()
    assert data.task == "multiclass" and data.class_names == list(CLASSES)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 84, "val": 12, "test": 24}
    x = data.splits["train"].tensors[0]
    assert x.shape[1] == 4  # a, b and the two tag columns; species is the label
    torch.testing.assert_close(x.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    tags = ["tag_x", "tag_y"]
    multi = make_datamodule("table", own, batch_size=16, path=path, label_columns=tags,
                            feature_columns=["a", "b"])  # fmt: skip
    multi.setup()
    assert multi.task == "multilabel" and multi.input_shape == (2,) and multi.num_classes == 2
    assert set(multi.splits["test"].tensors[1].sum(1).tolist()) == {1.0}
    fewer = make_datamodule("table", own, batch_size=16, path=path, label_column="species",
                            ignore_columns=["b", "tag_y"])  # fmt: skip
    fewer.setup()
    assert fewer.feature_stats[0] == ["a", "tag_x"]
    torch.testing.assert_close(fewer.splits["train"].tensors[0], x[:, [0, 2]])


@pytest.mark.parametrize(
    ("name", "options"),
    [("semicolons.csv", dict(sep=";", decimal=",")), ("tabs.tsv", dict(sep="\t")),
     ("pipes.csv.gz", dict(sep="|")), ("semicolons-points.csv", dict(sep=";"))],
)  # fmt: skip
def test_a_table_with_other_delimiters_reads_as_the_comma_csv(
    own: Path, name: str, options: dict
) -> None:
    """A spreadsheet's export (``;`` between cells, decimal commas), a TSV, ``|``: the delimiter
    is sniffed, and the splits equal the comma CSV's."""
    table = pd.read_csv(own / "table.csv")
    table["kind"] = np.where(table["b"] > 0, "up", "down")  # a text column beside the numbers
    table.to_csv(own / "comma.csv", index=False)
    table.to_csv(own / name, index=False, **options)
    loaded = []
    for path in (own / "comma.csv", own / name):
        data = make_datamodule("table", own, batch_size=16, path=str(path),
                               label_column="species")  # fmt: skip
        data.setup()
        loaded.append(data)
    assert loaded[1].feature_stats[0] == ["a", "b", "tag_x", "tag_y", "kind=down", "kind=up"]
    for split in ("train", "val", "test"):
        for mine, theirs in zip(loaded[1].splits[split].tensors, loaded[0].splits[split].tensors,
                                strict=True):  # fmt: skip
            torch.testing.assert_close(mine, theirs)


def test_carved_splits_are_stratified_by_class(tmp_path: Path, caplog) -> None:
    """val and test carved from a table of 5% `rare` rows hold 5% of it too (scikit-learn's
    train_test_split(stratify=...)); stratify=false gives the seeded permutation; a class of one
    row cannot be stratified: said, and carved at random."""
    rng = np.random.default_rng(0)
    y = np.array(["common"] * 380 + ["rare"] * 20)
    rng.shuffle(y)
    path = tmp_path / "t.csv"
    pd.DataFrame({"x": rng.normal(size=400), "y": y}).to_csv(path, index=False)

    def rows(**options) -> dict[str, np.ndarray]:
        data = make_datamodule("table", tmp_path, batch_size=16, path=str(path), label_column="y",
                               val_size=0.1, test_size=0.2, **options)  # fmt: skip
        return data.split_of(pd.read_csv(path))

    split = rows()
    assert {k: len(v) for k, v in split.items()} == {"train": 280, "val": 40, "test": 80}
    assert sorted(np.concatenate(list(split.values()))) == list(range(400))
    assert [(y[split[s]] == "rare").sum() for s in ("train", "val", "test")] == [14, 2, 4]
    assert not np.array_equal(rows(split_seed=1)["test"], split["test"])
    assert all(np.array_equal(rows()[s], split[s]) for s in split)  # fixed by split_seed
    plain = rows(stratify=False)
    val, test, train = split_indices(400, [40, 80, 280], 0)
    assert [plain[s].tolist() for s in ("val", "test", "train")] == [
        val.tolist(), test.tolist(), train.tolist()]  # fmt: skip

    y[np.flatnonzero(y == "rare")[1:]] = "common"  # one rare row
    pd.DataFrame({"x": rng.normal(size=400), "y": y}).to_csv(path, index=False)
    with caplog.at_level("WARNING"):
        lone = rows()
    assert "carved at random, not stratified by class" in caplog.text
    assert [lone[s].tolist() for s in ("val", "test", "train")] == [
        val.tolist(), test.tolist(), train.tolist()]  # fmt: skip


def label_distribution(y: np.ndarray, parts: list[np.ndarray]) -> float:
    """Sechidis et al. 2011, Section 4.1, LD: the mean over labels j and subsets i of
    ``| |S_i^j| / (|S_i| − |S_i^j|) − |D^j| / (|D| − |D^j|) |`` (0: every subset keeps each
    label's positive-to-negative ratio)."""
    whole = y.sum(0) / (len(y) - y.sum(0))
    return float(np.mean([np.abs(y[q].sum(0) / (len(q) - y[q].sum(0)) - whole) for q in parts]))


def test_multilabel_splits_are_carved_by_iterative_stratification(tmp_path: Path) -> None:
    """Sechidis et al. 2011, Algorithm 1, on yeast's 14 real labels (2,417 rows): the sizes
    exact, the rarest label's 34 samples dealt as its desired counts |D^l| · r_j to within one,
    and the paper's LD measure below that of every one of 10 random carves. A multi-label table
    is carved so by default, at random with stratify=false."""
    from lossbench.data.stratify import iterative

    yeast = make_datamodule("yeast", "/nonexistent", batch_size=64)
    frame = pd.read_csv(yeast.path)
    names = list(frame.columns[-14:])
    y = frame[names].to_numpy(dtype=float)
    n, sizes = len(y), [240, 480, len(y) - 720]
    parts = iterative(y, sizes, 0)
    assert [len(q) for q in parts] == sizes and sorted(np.concatenate(parts)) == list(range(n))
    rarest = int(np.argmin(y.sum(0)))
    assert y[:, rarest].sum() == 34
    desired = y[:, rarest].sum() * np.array(sizes) / n
    assert np.all(np.abs([y[q, rarest].sum() for q in parts] - desired) < 1)
    random = [label_distribution(y, [i.numpy() for i in split_indices(n, sizes, s)])
              for s in range(10)]  # fmt: skip
    assert label_distribution(y, parts) < min(random) / 2, (label_distribution(y, parts), random)
    assert not np.array_equal(iterative(y, sizes, 1)[1], parts[1])  # the seed draws

    path = tmp_path / "labels.csv"
    frame[[*frame.columns[:3], *names]].to_csv(path, index=False)

    def carved(**options) -> dict[str, np.ndarray]:
        data = make_datamodule("table", tmp_path, batch_size=16, path=str(path),
                               label_columns=names, val_size=240, test_size=480,
                               **options)  # fmt: skip
        return data.split_of(pd.read_csv(path))

    split = carved()
    assert [split[s].tolist() for s in ("val", "test", "train")] == [q.tolist() for q in parts]
    val, test, train = split_indices(n, sizes, 0)
    assert carved(stratify=False)["test"].tolist() == test.tolist()


def test_yeast_is_mulans_split() -> None:
    data = make_datamodule("yeast", "/nonexistent", batch_size=64, val_size=0.2, split_seed=0)
    data.setup()
    sizes = {k: len(v) for k, v in data.splits.items()}
    assert sizes["train"] + sizes["val"] == 1500 and sizes["test"] == 917
    assert data.input_shape == (103,) and data.num_classes == 14 and data.task == "multilabel"
    raw = pd.read_csv(data.path)  # river's copy: its first 917 rows are MULAN's test set
    labels = raw[[f"Class{i}" for i in range(1, 15)]].to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(data.splits["test"].tensors[1].numpy(), labels[:917])


def test_digits_are_sklearns_1797_images() -> None:
    data = make_datamodule("digits", "/nonexistent", batch_size=64)
    data.setup()
    assert sum(len(v) for v in data.splits.values()) == 1797
    assert data.input_shape == (1, 8, 8) and data.splits["train"].tensors[0].dtype == torch.uint8


def cifar_folder(root: Path, rng: np.random.Generator, classes: int = 10) -> dict:
    """Tiny batches in the pickle layout of ``cifar-10-batches-py``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, 4).tolist()
        with (folder / name).open("wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
        written[name] = (data, labels)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(classes)]}, f)
    return written


def test_cifar_layout_decodes_and_unverified_files_are_refused(tmp_path: Path) -> None:
    written = cifar_folder(tmp_path, np.random.default_rng(0))
    x, y = decode_cifar(tmp_path / "cifar-10-batches-py", ["data_batch_1", "data_batch_2"],
                        "labels")  # fmt: skip
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.uint8
    np.testing.assert_array_equal(x[:4].reshape(4, -1).numpy(), written["data_batch_1"][0])
    assert x[0, 1, 0, 0] == written["data_batch_1"][0][0, 1024]  # channel-major, as CIFAR
    assert y.tolist() == written["data_batch_1"][1] + written["data_batch_2"][1]
    data = make_datamodule("cifar10", tmp_path, batch_size=8, val_size=2, split_seed=0,
                           download=False, mean=None, std=None)  # fmt: skip
    assert data.class_names == [f"c{i}" for i in range(10)]
    with pytest.raises(LossbenchError, match="do not match the published checksums"):
        data.setup()


def test_svhn_layout_decodes_and_missing_files_are_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    labels = np.array([[10], [1], [2], [9], [10]], dtype=np.uint8)  # SVHN stores 0 as 10
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": images, "y": labels})
    x, y = decode_svhn(tmp_path / "train_32x32.mat")
    assert y.tolist() == [0, 1, 2, 9, 0]
    assert torch.equal(x[3], torch.from_numpy(images[..., 3]).permute(2, 0, 1))
    data = make_datamodule("svhn", tmp_path / "none", batch_size=8, val_size=2, split_seed=0,
                           download=False, mean=None, std=None)  # fmt: skip
    with pytest.raises(LossbenchError, match="dataset files are missing") as err:
        data.setup()
    assert str(tmp_path / "none" / "SVHN" / "test_32x32.mat") in str(err.value)


TRAIN = ["trainer.max_epochs=2", "trainer.accelerator=cpu", "trainer.log_every_n_steps=1",
         "progress_bar=log"]  # fmt: skip


@pytest.mark.parametrize(
    "kind",
    ["image_folder+resnet_cifar", "image_csv+torchvision", "table+mlp", "yeast", "digits+cnn"],
)
def test_each_kind_trains_through_train_py(kind: str, own: Path, tmp_path: Path, tiny_data) -> None:
    folders = own / "folders"
    overrides = {
        "image_folder+resnet_cifar": ["dataset=image_folder", f"dataset.root={folders}",
                                      "dataset.image_size=16", "model=resnet_cifar",
                                      "augment=flip_crop", "optimizer=sgd",
                                      "scheduler=cosine", "scheduler.warmup_epochs=1"],
        "image_csv+torchvision": ["dataset=image_csv", f"dataset.csv={folders / 'manifest.csv'}",
                                  "dataset.image_size=16", "head=sigmoid", "loss=focal",
                                  "model=torchvision", "model.arch=resnet18",
                                  "dataset.in_memory=false", "dataset.num_workers=1"],
        "table+mlp": ["dataset=table", f"dataset.path={own / 'table.parquet'}",
                      "dataset.label_column=species", "optimizer=adamw", "scheduler=onecycle"],
        "yeast": ["dataset=yeast", "head=sigmoid", "loss=bce_logits"],
        "digits+cnn": ["dataset=digits", "model=cnn", "augment=randaugment", "scheduler=step",
                       "scheduler.milestones=[1]"],
    }[kind]  # fmt: skip
    proc = run_train(tmp_path, own / "data", *overrides, *TRAIN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    (found,) = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    assert found.info.status == "FINISHED" and "test/acc" in found.data.metrics
    assert found.data.params["data_source"]
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"weights.pt", "predictor.json"} <= artifacts
    if "scheduler=" in " ".join(overrides):
        assert client.get_metric_history(found.info.run_id, "train/lr")


QUALITY = {  # README's quality figures: (overrides, test metric, bound); published on yeast:
    # Hamming loss 0.19-0.21, micro-F1 0.64-0.66
    "yeast hamming loss": (["dataset=yeast", "head=sigmoid", "loss=bce_logits"],
                           "test/hamming_acc", 1 - 0.205),
    "yeast micro-F1": (["dataset=yeast", "head=sigmoid", "loss=bce_logits"], "test/f1_micro", 0.63),
    "digits accuracy": (["dataset=digits"], "test/acc", 0.95),
}  # fmt: skip


@pytest.mark.parametrize("case", list(QUALITY))
def test_quality_figures_hold(case: str, tmp_path: Path) -> None:
    overrides, metric, bound = QUALITY[case]
    uri = sqlite_uri(tmp_path / "mlflow.db")
    cfg = compose_cfg([*overrides, "model=mlp", "trainer.max_epochs=30", "trainer.accelerator=cpu",
                       "progress_bar=log", f"logger.tracking_uri={uri}"], tmp_path)  # fmt: skip
    run_id = run.train(cfg)
    assert MlflowClient(uri).get_run(run_id).data.metrics[metric] >= bound
