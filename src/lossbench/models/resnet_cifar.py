"""The CIFAR ResNets of He et al. 2016 ("Deep Residual Learning for Image Recognition", Sec. 4.2):
the model of the CIFAR loss studies (Cui et al. 2019 trained ResNet-32)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from lossbench.errors import LossbenchError
from lossbench.models.registry import MODELS


class BasicBlock(nn.Module):
    """Two 3×3 conv–BN layers with a shortcut. Where the block halves the maps and doubles the
    channels, the shortcut is option A: subsampled identity, the new channels zero-padded (no
    parameters, as the paper's CIFAR networks use)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.stride, self.pad = stride, out_ch - in_ch

    def shortcut(self, x: Tensor) -> Tensor:
        if self.stride == 1 and not self.pad:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@MODELS.register("resnet_cifar")
class ResNetCIFAR(nn.Module):
    """ResNet-``depth`` for small images, ``depth = 6n + 2`` (20, 32, 44, 56, 110): a 3×3 conv
    with 16 filters, three stages of n basic blocks with 16, 32 and 64 filters (the second and
    third halve the maps), global average pooling and a linear layer to C logits. Convolutions
    start from He et al. 2015's normal initialisation. Any number of input channels and any
    image size (the pooling is global)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, depth: int = 20) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise LossbenchError(
                f"model=resnet_cifar needs image inputs (channels, height, width), got shape "
                f"{tuple(input_shape)}; use `model=mlp` for this dataset"
            )
        if depth < 8 or (depth - 2) % 6:
            raise LossbenchError(
                f"model.depth={depth}: a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110). "
                "Fix: e.g. `model.depth=20`"
            )
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        in_ch = 16
        for stage, out_ch in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(BasicBlock(in_ch, out_ch, 2 if stage and not i else 1))
                in_ch = out_ch
        self.stages = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        features = self.stages(self.stem(x))
        return self.fc(F.adaptive_avg_pool2d(features, 1).flatten(1))
