"""Data modules through the real torchvision loaders, on IDX files written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_SIZES, TINY_VAL_SIZE, tiny_arrays, write_idx_dir
from lossbench.data import make_datamodule
from lossbench.errors import LossbenchError

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
IMAGE_PARAMS = dict(
    batch_size=32, val_size=TINY_VAL_SIZE, split_seed=0, download=False, mean=0.5, std=0.25
)


def image_data(name: str, data_dir: Path, **overrides):
    data = make_datamodule(name, data_dir, **{**IMAGE_PARAMS, **overrides})
    data.prepare_data()
    data.setup()
    return data


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")]
)
def test_idx_files_read_back_through_torchvision(tiny_data, name: str, folder: str) -> None:
    data_dir, arrays = tiny_data
    data = image_data(name, data_dir)
    train_x, train_y = arrays[folder]["train"]
    sizes = {k: len(v) for k, v in data.splits.items()}
    assert sizes == {
        "train": TINY_SIZES["train"] - TINY_VAL_SIZE,
        "val": TINY_VAL_SIZE,
        "test": TINY_SIZES["test"],
    }
    # train + val together are exactly the written training images, each once
    x = torch.cat([data.splits["train"].tensors[0], data.splits["val"].tensors[0]])
    y = torch.cat([data.splits["train"].tensors[1], data.splits["val"].tensors[1]])
    order = np.lexsort(x.reshape(len(x), -1).numpy().T[::-1])
    want = np.lexsort(train_x.reshape(len(train_x), -1).T[::-1])
    np.testing.assert_array_equal(x.squeeze(1).numpy()[order], train_x[want])
    np.testing.assert_array_equal(y.numpy()[order], train_y[want])
    test_x, test_y = data.splits["test"].tensors
    np.testing.assert_array_equal(test_x.squeeze(1).numpy(), arrays[folder]["test"][0])
    np.testing.assert_array_equal(test_y.numpy(), arrays[folder]["test"][1])
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10


def test_split_is_fixed_by_split_seed_only(tiny_data) -> None:
    data_dir, _ = tiny_data
    torch.manual_seed(123)
    a = image_data("mnist", data_dir).splits["val"].tensors[0]
    torch.manual_seed(456)
    b = image_data("mnist", data_dir).splits["val"].tensors[0]
    c = image_data("mnist", data_dir, split_seed=1).splits["val"].tensors[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_batches_are_normalised_after_transfer(tiny_data) -> None:
    data_dir, _ = tiny_data
    data = image_data("mnist", data_dir)
    x, y = next(iter(data.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (32, 1, 28, 28)
    nx, ny = data.on_after_batch_transfer([x, y], 0)
    torch.testing.assert_close(nx, (x.float() / 255 - 0.5) / 0.25)
    assert torch.equal(ny, y)


def test_missing_files_offline_say_what_was_expected_where(tmp_path: Path) -> None:
    with pytest.raises(LossbenchError) as err:
        image_data("mnist", tmp_path)
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in message
    assert str(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte") in message
    assert "downloading is off" in message
    assert "work offline: fashion_mnist" in message and "multilabel" in message


def test_failed_download_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real torchvision download code, pointed at a closed local port (no network in tests).
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(LossbenchError, match="the download failed") as err:
        image_data("mnist", tmp_path, download=True)
    assert str(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte") in str(err.value)


def test_system_copy_is_unpacked_into_torchvision_layout(tmp_path: Path) -> None:
    system = tmp_path / "system"
    arrays = tiny_arrays(7)
    write_idx_dir(system, arrays, gz=True)
    data = image_data("fashion_mnist", tmp_path / "data", system_dir=str(system))
    assert (tmp_path / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    np.testing.assert_array_equal(
        data.splits["test"].tensors[0].squeeze(1).numpy(), arrays["test"][0]
    )


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist absent")
def test_real_fashion_mnist_from_debian(tmp_path: Path) -> None:
    data = image_data("fashion_mnist", tmp_path, val_size=5000, system_dir=str(DEBIAN_FASHION))
    assert {k: len(v) for k, v in data.splits.items()} == {
        "train": 55000,
        "val": 5000,
        "test": 10000,
    }
    assert torch.bincount(data.splits["test"].tensors[1]).tolist() == [1000] * 10


MULTILABEL = dict(
    batch_size=32,
    n_samples=400,
    n_features=12,
    n_classes=5,
    n_labels=2,
    allow_unlabeled=True,
    seed=3,
    val_size=80,
    test_size=100,
)


def test_multilabel_is_deterministic_and_multi_hot(tmp_path: Path) -> None:
    torch.manual_seed(1)
    a = make_datamodule("multilabel", tmp_path, **MULTILABEL)
    a.setup()
    torch.manual_seed(2)
    b = make_datamodule("multilabel", tmp_path, **MULTILABEL)
    b.setup()
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 220, "val": 80, "test": 100}
    for split in a.splits:
        for ta, tb in zip(a.splits[split].tensors, b.splits[split].tensors, strict=True):
            assert torch.equal(ta, tb)
    x, y = a.splits["train"].tensors
    assert x.shape == (220, 12) and y.shape == (220, 5) and y.dtype == torch.float32
    assert set(y.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(x.mean(0), torch.zeros(12), atol=1e-5, rtol=0)
    assert a.input_shape == (12,) and a.num_classes == 5


def test_multilabel_needs_two_classes(tmp_path: Path) -> None:
    with pytest.raises(LossbenchError, match="n_classes=1: a classifier needs at least 2"):
        make_datamodule("multilabel", tmp_path, **{**MULTILABEL, "n_classes": 1})


CANVASES = dict(
    batch_size=16,
    canvas=40,
    max_items=3,
    n_train=50,
    n_val=20,
    n_test=30,
    seed=0,
    val_size=TINY_VAL_SIZE,
    split_seed=0,
    download=False,
    mean=0.06,
    std=0.22,
)


def test_canvas_holds_the_pasted_item_and_its_class() -> None:
    from lossbench.data.canvases import compose_canvases

    labels = torch.arange(10)
    images = (labels * 20 + 10).to(torch.uint8)[:, None, None, None].expand(10, 1, 28, 28)
    gen = torch.Generator().manual_seed(0)
    x, y = compose_canvases(images.contiguous(), labels, 200, 40, 1, 10, gen)
    assert x.shape == (200, 1, 40, 40) and y.shape == (200, 10)
    label = (x.amax(dim=(1, 2, 3)).long() - 10) // 20
    assert torch.equal(y, torch.nn.functional.one_hot(label, 10).float())
    assert ((x > 0).sum(dim=(1, 2, 3)) == 28 * 28).all()  # one whole item per canvas


def test_canvases_from_tiny_mnist_are_deterministic(tiny_data) -> None:
    data_dir, _ = tiny_data
    a = make_datamodule("mnist_multilabel", data_dir, **CANVASES)
    a.setup()
    b = make_datamodule("mnist_multilabel", data_dir, **CANVASES)
    b.setup()
    c = make_datamodule("mnist_multilabel", data_dir, **{**CANVASES, "seed": 1})
    c.setup()
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 50, "val": 20, "test": 30}
    for split in a.splits:
        assert torch.equal(a.splits[split].tensors[0], b.splits[split].tensors[0])
        assert torch.equal(a.splits[split].tensors[1], b.splits[split].tensors[1])
    assert not torch.equal(a.splits["train"].tensors[0], c.splits["train"].tensors[0])
    x, y = a.splits["train"].tensors
    assert x.dtype == torch.uint8 and x.shape[1:] == (1, 40, 40) == a.input_shape
    assert ((y.sum(1) >= 1) & (y.sum(1) <= 3)).all()


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist absent")
def test_fashion_canvases_work_offline_from_debian(tmp_path: Path) -> None:
    params = {**CANVASES, "val_size": 5000, "system_dir": str(DEBIAN_FASHION)}
    data = make_datamodule("fashion_mnist_multilabel", tmp_path, **params)
    data.prepare_data()
    data.setup()
    assert data.splits["test"].tensors[1].shape == (30, 10)


def torchvision_test_split(source, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The naive path: torchvision's dataset, one PIL image at a time through ToTensor."""
    from torchvision.transforms import ToTensor

    ds = source(str(root), train=False, download=False, transform=ToTensor())
    xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
    return torch.stack(xs), torch.tensor(ys)


def fast_test_split(data) -> tuple[torch.Tensor, torch.Tensor]:
    """The fast path: index-slice batches, scaled on the device by the data module's hook."""
    batches = [data.on_after_batch_transfer(b, 0) for b in data.test_dataloader()]
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def test_fast_path_equals_torchvision_loader_on_idx_files(tiny_data) -> None:
    from torchvision.datasets import MNIST

    data_dir, _ = tiny_data
    data = image_data("mnist", data_dir, mean=0.0, std=1.0)
    x, y = fast_test_split(data)
    want_x, want_y = torchvision_test_split(MNIST, data_dir)
    assert torch.equal(x, want_x) and torch.equal(y, want_y)
    assert (data_dir / "MNIST" / "lossbench" / "test.pt").is_file()  # the decoded cache
    again = image_data("mnist", data_dir, mean=0.0, std=1.0)  # now read from the cache
    assert torch.equal(fast_test_split(again)[0], x)


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist absent")
def test_fast_path_equals_torchvision_loader_on_fashion_mnist(tmp_path: Path) -> None:
    from torchvision.datasets import FashionMNIST

    data = image_data(
        "fashion_mnist", tmp_path, val_size=5000, system_dir=str(DEBIAN_FASHION), mean=0, std=1
    )
    x, y = fast_test_split(data)
    want_x, want_y = torchvision_test_split(FashionMNIST, tmp_path)
    assert x.shape == (10000, 1, 28, 28)
    assert torch.equal(x, want_x) and torch.equal(y, want_y)


def test_shuffled_order_is_fixed_by_the_seed(tiny_data) -> None:
    data_dir, _ = tiny_data

    def epochs(seed: int) -> list[torch.Tensor]:
        data = make_datamodule("mnist", data_dir, shuffle_seed=seed, **IMAGE_PARAMS)
        data.setup()
        loader = data.train_dataloader()
        return [y for _ in range(2) for _, y in loader]  # two epochs of label batches

    a, b, c = epochs(1), epochs(1), epochs(2)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))
    half = len(a) // 2
    assert not all(torch.equal(p, q) for p, q in zip(a[:half], a[half:], strict=True))
    assert sum(len(y) for y in a[:half]) == TINY_SIZES["train"] - TINY_VAL_SIZE
