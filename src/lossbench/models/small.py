"""Small networks for small sets: an MLP for any input, a CNN for images."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from lossbench.errors import LossbenchError, check_range
from lossbench.models.registry import MODELS


@MODELS.register("mlp")
class MLP(nn.Module):
    """Flatten → [Linear → ReLU → Dropout] × len(hidden) → Linear to C logits.

    Works on any input shape (images are flattened), so it serves the synthetic set too.
    """

    sequential = True  # a plain sequence of layers: the fused launcher can stack copies

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (256, 128),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        for size in hidden:
            check_range("model.hidden", size, ge=1, example="[256,128]")
        check_range("model.dropout", dropout, ge=0, lt=1, example=0.1)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


@MODELS.register("cnn")
class CNN(nn.Module):
    """[Conv3x3 → BatchNorm → ReLU → MaxPool2] per channel count → Linear(hidden) → ReLU →
    Dropout → Linear. BatchNorm (Ioffe & Szegedy 2015) is optional (``batch_norm``).

    For (channels, height, width) image inputs.
    """

    sequential = True  # a plain sequence of layers: the fused launcher can stack copies

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.25,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise LossbenchError(
                f"model=cnn needs image inputs (channels, height, width), got shape "
                f"{tuple(input_shape)}; use `model=mlp` for this dataset"
            )
        in_ch, height, width = input_shape
        for size in channels:
            check_range("model.channels", size, ge=1, example="[32,64]")
        check_range("model.hidden", hidden, ge=1, example=128)
        check_range("model.dropout", dropout, ge=0, lt=1, example=0.25)
        if height >> len(channels) < 1 or width >> len(channels) < 1:
            raise LossbenchError(
                f"model.channels has {len(channels)} blocks, each halving the image, but the "
                f"images are only {height}x{width}. Fix: use fewer blocks, e.g. model.channels=[32]"
            )
        layers: list[nn.Module] = []
        for out_ch in channels:
            layers.append(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            in_ch, height, width = out_ch, height // 2, width // 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_ch * height * width, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
