"""Training-split augmentation (config group ``augment``), with ``torchvision.transforms.v2``.

Each option builds one transform of a uint8 image (C, H, W); it is applied per sample, so every
image draws its own flip, crop or operations: on the device for in-memory sets (before the batch
is normalised), in the DataLoader workers for streamed ones. Validation and test are never
augmented.
"""

from __future__ import annotations

from collections.abc import Sequence

from lossbench.data.base import Augment
from lossbench.errors import LossbenchError, check_range
from lossbench.registry import Registry

AUGMENTS: Registry = Registry("augment")


@AUGMENTS.register("none")
def none(input_shape: Sequence[int]) -> None:
    """No augmentation."""
    return None


@AUGMENTS.register("flip_crop")
def flip_crop(input_shape: Sequence[int], flip: bool = True, padding: int = 4) -> Augment:
    """A random horizontal flip (p = 0.5) and a random crop of the image's size from the image
    zero-padded by ``padding`` pixels: the CIFAR augmentation of He et al. 2016 (Sec. 4.2)."""
    from torchvision.transforms import v2  # imported by the runs that augment, alone

    check_range("augment.padding", padding, ge=0, example=4)
    return v2.Compose([
        v2.RandomHorizontalFlip(p=0.5 if flip else 0.0),
        v2.RandomCrop(list(input_shape[1:]), padding=padding),
    ])  # fmt: skip


@AUGMENTS.register("randaugment")
def randaugment(input_shape: Sequence[int], num_ops: int = 2, magnitude: int = 9) -> Augment:
    """RandAugment (Cubuk et al. 2020): ``num_ops`` operations drawn uniformly per image, at
    ``magnitude`` (0–30), ``torchvision.transforms.v2.RandAugment``."""
    check_range("augment.num_ops", num_ops, ge=1, example=2)
    from torchvision.transforms import v2

    check_range("augment.magnitude", magnitude, ge=0, le=30, example=9)
    return v2.RandAugment(num_ops=num_ops, magnitude=magnitude)


def make_augment(name: str, input_shape: Sequence[int], **params: object) -> Augment | None:
    """The augmentation registered under ``name`` for images of ``input_shape``."""
    if name != "none" and len(input_shape) != 3:
        raise LossbenchError(
            f"augment={name} transforms images, but this dataset's inputs have shape "
            f"{tuple(input_shape)}. Fix: `augment=none`"
        )
    return AUGMENTS[name](input_shape, **params)
