"""Shared fixtures: tiny IDX files in torchvision's layout, temp MLflow stores, train.py runs."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import DictConfig

from lossbench.config import ROOT, compose_run_config
from lossbench.data.idx import IDX_FILES
from lossbench.data.idx import write_idx_dir as write_idx

os.environ.setdefault("LOSSBENCH_ROOT", str(ROOT))

TINY_SIZES = {"train": 256, "test": 64}
TINY_VAL_SIZE = 56


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
    """torchvision's raw files (lossbench's writer), gzipped like Debian's copy if ``gz``."""
    write_idx(directory, arrays)
    if gz:
        for name in IDX_FILES:
            raw = directory / name
            (directory / f"{name}.gz").write_bytes(gzip.compress(raw.read_bytes()))
            raw.unlink()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """A data_dir with tiny MNIST/raw and FashionMNIST/raw sets; returns (dir, arrays)."""
    data_dir = tmp_path_factory.mktemp("data")
    arrays = {"MNIST": tiny_arrays(0), "FashionMNIST": tiny_arrays(1)}
    for folder, arr in arrays.items():
        write_idx_dir(data_dir / folder / "raw", arr)
    return data_dir, arrays


def compose_cfg(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    return compose_run_config(overrides, output_dir or ROOT / "outputs" / "compose")


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
    tmp: Path, data_dir: Path, *overrides: str, multirun: bool = False, sweep_dir: str = "multirun"
) -> subprocess.CompletedProcess[str]:
    """The real ``train.py`` in a subprocess, writing only under ``tmp`` (a sweep: in
    ``tmp/<sweep_dir>``)."""
    args = [sys.executable, str(ROOT / "train.py")]
    if multirun:
        args.append("-m")
    args += [
        f"data_dir={data_dir}",
        f"logger.tracking_uri={sqlite_uri(tmp / 'mlflow.db')}",
        f"hydra.run.dir={tmp / 'outputs'}",
        f"hydra.sweep.dir={tmp / sweep_dir}",
        f"output_roots=[{tmp}]",
        *overrides,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp)
