"""Stress conditions on the training split (config ``dataset.noise.*``, ``dataset.imbalance.*``):
label noise and a long-tailed class distribution. The test split stays clean and balanced.

Noise (depends only on ``noise.seed``, never on the run's seed, so that every pair of a study
sees the same noisy labels):

* ``symmetric`` (multi-class): exactly round(rate·N) training labels, chosen uniformly, each
  flipped to a uniformly drawn *other* class (Ma et al. 2020, Sec. 5; Patrini et al. 2017).
* ``asymmetric`` (multi-class): within a class map, exactly round(rate·n_c) samples of each
  mapped class c flipped to map[c]; MNIST's map 7→1, 2→7, 5↔6, 3→8 and CIFAR-10's truck→
  automobile, bird→airplane, deer→horse, cat↔dog (Patrini et al. 2017, Sec. 5; as Ma et al. 2020
  use them), else the next class c → c+1 mod C, or ``noise.map``.
* ``symmetric`` (multi-label): exactly round(rate·N·C) label bits flipped, chosen uniformly;
  ``missing``: exactly round(rate·P) of the P positive bits dropped (set to 0).

The validation split gets the same kind of noise (its own draw) unless ``noise.val=false``.
The achieved share of changed training labels (bits, for multi-label) is ``flipped_fraction``.

Imbalance (Cui et al. 2019, Sec. 5.1, "long-tailed CIFAR"; ``profile=exp``): class c keeps
n_c = round(n_max · factor^(−c/(C−1))) of its training samples, n_max the largest class's
count, a random subset fixed by ``imbalance.seed``; ``imbalance_actual`` = max/min count kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lossbench.errors import LossbenchError, check_range

CLASS_MAPS = {
    "mnist": {7: 1, 2: 7, 5: 6, 6: 5, 3: 8},
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
}
NOISE_KINDS = ("symmetric", "asymmetric", "missing")


@dataclass
class NoiseConfig:
    """``dataset.noise``: label noise on the training (and validation) split."""

    rate: float = 0.0
    kind: str = "symmetric"
    seed: int = 0
    val: bool = True
    map: Any = None  # asymmetric: {class: class}; null: the dataset's published map, or next


@dataclass
class ImbalanceConfig:
    """``dataset.imbalance``: a long-tailed training split (factor 1: as it is)."""

    factor: float = 1.0
    profile: str = "exp"
    seed: int = 0


@dataclass
class Stress:
    """What the stress did to the training split, for the run's records."""

    flipped_fraction: float | None = None
    imbalance_actual: float | None = None
    class_counts: list[int] = field(default_factory=list)


def check(noise: NoiseConfig, imbalance: ImbalanceConfig, task: str) -> None:
    check_range("dataset.noise.rate", noise.rate, ge=0, le=1, example=0.4)
    if noise.kind not in NOISE_KINDS:
        raise LossbenchError(
            f"dataset.noise.kind={noise.kind!r} is not one of {', '.join(NOISE_KINDS)}. Fix: "
            "`dataset.noise.kind=symmetric`"
        )
    allowed = ("symmetric", "missing") if task == "multilabel" else ("symmetric", "asymmetric")
    if noise.rate and noise.kind not in allowed:
        raise LossbenchError(
            f"dataset.noise.kind={noise.kind} does not apply to a {task} dataset; it takes "
            f"{', '.join(allowed)}. Fix: `dataset.noise.kind=symmetric`"
        )
    check_range("dataset.imbalance.factor", imbalance.factor, ge=1, example=100)
    if imbalance.profile != "exp":
        raise LossbenchError(
            f"dataset.imbalance.profile={imbalance.profile!r}: only exp (Cui et al. 2019) is "
            "implemented. Fix: `dataset.imbalance.profile=exp`"
        )
    if imbalance.factor > 1 and task != "multiclass":
        raise LossbenchError(
            "dataset.imbalance needs single-label data (a class count per sample). Fix: "
            "`dataset.imbalance.factor=1` on a multi-label set"
        )


def class_map(noise: NoiseConfig, dataset: str, num_classes: int) -> dict[int, int]:
    if noise.map is not None:
        mapping = {int(k): int(v) for k, v in dict(noise.map).items()}
    else:
        mapping = CLASS_MAPS.get(dataset) or {c: (c + 1) % num_classes for c in range(num_classes)}
    bad = [c for pair in mapping.items() for c in pair if not 0 <= c < num_classes]
    if bad:
        raise LossbenchError(
            f"dataset.noise.map names class {bad[0]}, not one of 0..{num_classes - 1}. Fix: map "
            "classes of this dataset, e.g. `dataset.noise.map={0:1,1:0}`"
        )
    return mapping


def noisy(
    y: Tensor, noise: NoiseConfig, num_classes: int, dataset: str, generator: torch.Generator
) -> Tensor:
    """The labels ``y`` with noise: class indices (N,) or multi-hot rows (N, C)."""
    y = y.clone()
    if not noise.rate:
        return y
    if y.ndim == 2:  # multi-label bits
        flat = y.view(-1)
        pool = flat.nonzero().flatten() if noise.kind == "missing" else torch.arange(len(flat))
        chosen = pool[
            torch.randperm(len(pool), generator=generator)[: round(noise.rate * len(pool))]
        ]
        flat[chosen] = 0 if noise.kind == "missing" else 1 - flat[chosen]
        return y
    if noise.kind == "symmetric":
        chosen = torch.randperm(len(y), generator=generator)[: round(noise.rate * len(y))]
        shift = torch.randint(1, num_classes, (len(chosen),), generator=generator)
        y[chosen] = (y[chosen] + shift) % num_classes  # uniform over the other classes
        return y
    original = y.clone()
    for source, target in sorted(class_map(noise, dataset, num_classes).items()):
        members = (original == source).nonzero().flatten()
        order = torch.randperm(len(members), generator=generator)
        y[members[order[: round(noise.rate * len(members))]]] = target
    return y


def long_tail(y: Tensor, imbalance: ImbalanceConfig, num_classes: int) -> Tensor:
    """Indices of the training samples kept: n_c = round(n_max · factor^(−c/(C−1)))."""
    generator = torch.Generator().manual_seed(imbalance.seed)
    counts = torch.bincount(y, minlength=num_classes)
    n_max = int(counts.max())
    kept = []
    for c in range(num_classes):
        wanted = round(n_max * imbalance.factor ** (-c / max(num_classes - 1, 1)))
        members = (y == c).nonzero().flatten()
        order = torch.randperm(len(members), generator=generator)
        kept.append(members[order[: min(wanted, len(members))]])
    return torch.cat(kept).sort().values


def apply(
    splits: dict[str, Tensor],
    noise: NoiseConfig,
    imbalance: ImbalanceConfig,
    num_classes: int,
    dataset: str,
) -> tuple[dict[str, Tensor], dict[str, Tensor], Stress]:
    """``({split: indices kept}, {split: new targets (of the kept samples)}, Stress)`` for the
    targets of the train and val splits (test is not touched)."""
    keep = {s: torch.arange(len(y)) for s, y in splits.items()}
    info = Stress()
    train = splits["train"]
    if imbalance.factor > 1:
        keep["train"] = long_tail(train, imbalance, num_classes)
        counts = torch.bincount(train[keep["train"]], minlength=num_classes)
        info.imbalance_actual = float(counts.max() / counts[counts > 0].min())
    targets = {s: splits[s][keep[s]] for s in splits}
    if targets["train"].ndim == 1:  # the training split's classes, before any label is flipped
        info.class_counts = torch.bincount(targets["train"], minlength=num_classes).tolist()
    if noise.rate:
        before = targets["train"]
        targets["train"] = noisy(before, noise, num_classes, dataset,
                                 torch.Generator().manual_seed(noise.seed))  # fmt: skip
        changed = (targets["train"] != before).float()
        info.flipped_fraction = float(changed.mean())
        if noise.val and "val" in targets:
            targets["val"] = noisy(targets["val"], noise, num_classes, dataset,
                                   torch.Generator().manual_seed(noise.seed + 1))  # fmt: skip
    return keep, targets, info
