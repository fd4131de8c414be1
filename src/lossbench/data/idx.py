"""Writing LeCun's IDX format (what MNIST-format sets ship as), for synthetic stand-ins."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

# torchvision's raw file names → (split, images?)
IDX_FILES = {
    "train-images-idx3-ubyte": ("train", True),
    "train-labels-idx1-ubyte": ("train", False),
    "t10k-images-idx3-ubyte": ("test", True),
    "t10k-labels-idx1-ubyte": ("test", False),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic ``0x0000 08 <ndim>``, big-endian sizes, data."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(directory: Path, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write ``{"train": (images, labels), "test": (...)}`` as torchvision's four raw files."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, (split, is_images) in IDX_FILES.items():
        (directory / name).write_bytes(idx_bytes(arrays[split][0 if is_images else 1]))
