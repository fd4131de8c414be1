"""The report's plots (PNG, Matplotlib's object API: no global state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from lossbench.report.write import Pair


def plot_curves(pairs: list[Pair], path: Path) -> None:
    """Validation loss per epoch: mean and ±1 std band over seeds, per pair."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for p in pairs:
        n = min(len(c) for c in p.val_curves)
        curves = np.array([c[:n] for c in p.val_curves])
        x = np.arange(1, n + 1)
        mean, std = curves.mean(0), curves.std(0)
        ax.plot(x, mean, marker="o", label=p.name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val/loss (each pair's own loss)")
    ax.legend()
    fig.savefig(path)


def plot_bars(pairs: list[Pair], metrics: Sequence[str], path: Path) -> None:
    """Test metrics as bars, ±1 std error bars."""
    metrics = [m for m in metrics if any(p.values(m).size for p in pairs)]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(pairs)
    for i, p in enumerate(pairs):
        means, stds = zip(*(p.mean_std(m) for m in metrics), strict=True)
        x = np.arange(len(metrics)) + i * width
        ax.bar(x, means, width, yerr=stds, capsize=3, label=p.name)
    ax.set_xticks(np.arange(len(metrics)) + width * (len(pairs) - 1) / 2, metrics)
    ax.set_ylabel("mean over seeds, ±1 std")
    ax.legend()
    fig.savefig(path)


def plot_confusion(labels: list[str], matrix: np.ndarray, title: str, path: Path) -> None:
    """Rows normalised to the share of each true class, as a heat map with the shares."""
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(share):
        if v >= 0.005:
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v > 0.5 else "black")  # fmt: skip
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of the true class")
    fig.savefig(path)


def plot_reliability(curves: Sequence[tuple[str, dict]], path: Path, task: str) -> None:
    """Reliability diagrams side by side (Guo et al. 2017, Fig. 1): per confidence bin, the
    accuracy (multi-label: how often the label is present) against the mean confidence; the
    diagonal is perfect calibration. ``curves``: (pair name, summed bins) of up to two pairs."""
    fig = Figure(figsize=(4 * len(curves), 4), layout="constrained")
    for i, (name, bins) in enumerate(curves, 1):
        ax = fig.add_subplot(1, len(curves), i)
        count = np.array(bins["count"])
        seen = count > 0
        width = 1 / len(count)
        centers = (np.arange(len(count)) + 0.5) * width
        accuracy = np.divide(bins["correct"], count, out=np.zeros(len(count)), where=seen)
        confidence = np.divide(bins["confidence"], count, out=np.zeros(len(count)), where=seen)
        ax.bar(centers[seen], accuracy[seen], width, edgecolor="black", label="observed")
        ax.bar(centers[seen], (confidence - accuracy)[seen], width, bottom=accuracy[seen],
               color="red", alpha=0.3, label="gap to confidence")  # fmt: skip
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence" if task == "multiclass" else "predicted probability")
        ax.set_ylabel("accuracy" if task == "multiclass" else "share present")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.savefig(path)
