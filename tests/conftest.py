"""Shared fixtures: tiny IDX files in torchvision's layout, temp MLflow stores, train.py runs."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LOSSBENCH_ROOT", str(ROOT))

IDX_FILES = {  # torchvision's raw file names → (split, images?)
    "train-images-idx3-ubyte": ("train", True),
    "train-labels-idx1-ubyte": ("train", False),
    "t10k-images-idx3-ubyte": ("test", True),
    "t10k-labels-idx1-ubyte": ("test", False),
}
TINY_SIZES = {"train": 256, "test": 64}
TINY_VAL_SIZE = 56


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding (LeCun's format) of a uint8 array: magic 0x0000 08 <ndim>, sizes, data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def tiny_arrays(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per split, images whose brightness depends on the label (learnable), and labels."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in TINY_SIZES.items():
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        noise = rng.integers(0, 60, size=(n, 28, 28))
        images = np.clip(noise + labels[:, None, None] * 19, 0, 255).astype(np.uint8)
        out[split] = (images, labels)
    return out


def write_idx_dir(directory: Path, arrays: dict, gz: bool = False) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, (split, is_images) in IDX_FILES.items():
        data = idx_bytes(arrays[split][0 if is_images else 1])
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """A data_dir with tiny MNIST/raw and FashionMNIST/raw sets; returns (dir, arrays)."""
    data_dir = tmp_path_factory.mktemp("data")
    arrays = {"MNIST": tiny_arrays(0), "FashionMNIST": tiny_arrays(1)}
    for folder, arr in arrays.items():
        write_idx_dir(data_dir / folder / "raw", arr)
    return data_dir, arrays


CONF = ROOT / "conf"


def compose_cfg(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """The config train.py would get, with HydraConfig set as in a real (single) run."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir or ROOT / "outputs" / "compose")
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # a task function gets the job config alone
    return cfg


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path}"


TINY_OVERRIDES = [
    f"dataset.val_size={TINY_VAL_SIZE}",
    "dataset.batch_size=32",
    "trainer.limit_train_batches=8",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=2",
    "trainer.accelerator=cpu",
    "progress_bar=log",
]


def run_train(
    tmp: Path, data_dir: Path, *overrides: str, multirun: bool = False
) -> subprocess.CompletedProcess[str]:
    """The real ``train.py`` in a subprocess, writing only under ``tmp``."""
    args = [sys.executable, str(ROOT / "train.py")]
    if multirun:
        args.append("-m")
    args += [
        f"data_dir={data_dir}",
        f"logger.tracking_uri={sqlite_uri(tmp / 'mlflow.db')}",
        f"hydra.run.dir={tmp / 'outputs'}",
        f"hydra.sweep.dir={tmp / 'multirun'}",
        *overrides,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp)
