"""Any classifier of ``torchvision.models`` (``model=torchvision model.arch=resnet18``), its last
linear layer replaced for the dataset's classes, optionally with pretrained weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from lossbench.errors import LossbenchError
from lossbench.models.registry import MODELS


def classification_models() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def cached(url: str) -> Path:
    """Where torchvision looks for the weights file of ``url`` before downloading it (under
    ``$TORCH_HOME/hub/checkpoints``, ``torch.hub.load_state_dict_from_url``'s folder)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def weights_of(arch: str, name: str):
    """The weights enum member ``name`` (``IMAGENET1K_V1``, or ``ResNet18_Weights.DEFAULT``) of
    ``arch``; refused with the names that exist."""
    enum = torchvision.models.get_model_weights(arch)
    try:
        return enum[name.split(".")[-1]]
    except KeyError:
        names = ", ".join(["DEFAULT", *(w.name for w in enum)])
        raise LossbenchError(
            f"model.weights={name} is not a weights name of {arch}; it has: {names}. Fix: e.g. "
            f"`model.weights=DEFAULT`, or `model.weights=null` (random initialisation)"
        ) from None


def expected_inputs(arch: str, weights: str) -> tuple[int, list[float], list[float]]:
    """``(image size, mean, std)`` that pretrained ``weights`` were trained with (their
    ``transforms()``: the crop size and the normalisation), read without downloading them."""
    preset = weights_of(arch, weights).transforms()
    return int(preset.crop_size[0]), list(preset.mean), list(preset.std)


def last_linear(net: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The network's last ``nn.Linear`` (its classifier), with its parent and attribute name:
    ``fc`` of a ResNet, ``classifier[-1]`` of an EfficientNet or ConvNeXt, ``heads.head`` of a
    ViT."""
    found = None
    for name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            found = name, module
    if found is None:
        raise LossbenchError("this torchvision model has no linear classifier to replace")
    path, layer = found
    parent = net.get_submodule(path.rpartition(".")[0]) if "." in path else net
    return parent, path.rpartition(".")[2], layer


@MODELS.register("torchvision")
class TorchvisionModel(nn.Module):
    """``torchvision.models.get_model(arch, weights=weights)``, its last linear layer replaced by
    one with C outputs. Gray inputs are repeated to three channels. With pretrained weights,
    inputs are resized to the size the weights expect (``input_size`` overrides; null: that of
    the weights, or the data's own) and the data module normalises with the weights' mean and
    std (``input_mean``/``input_std``). ``freeze_backbone``: train the new layer only (a linear
    probe)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        arch: str = "resnet18",
        weights: str | None = None,
        freeze_backbone: bool = False,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3 or input_shape[0] not in (1, 3):
            raise LossbenchError(
                f"model=torchvision needs gray or colour images, got inputs of shape "
                f"{tuple(input_shape)}; use `model=mlp` for this dataset"
            )
        if arch not in classification_models():
            raise LossbenchError(
                f"model.arch={arch} is not a classifier of torchvision.models; choose one of: "
                f"{', '.join(classification_models())}"
            )
        self.input_mean: list[float] | None = None
        self.input_std: list[float] | None = None
        if weights:
            size, self.input_mean, self.input_std = expected_inputs(arch, weights)
            input_size = input_size or size
            chosen = weights_of(arch, weights)
            try:
                self.net = torchvision.models.get_model(arch, weights=chosen)
            except (OSError, RuntimeError, ValueError) as err:  # offline: URLError is an OSError
                raise LossbenchError(
                    f"model.weights={weights} of {arch} could not be loaded ({err}). Fix: connect "
                    f"to the network once (torchvision keeps the file); offline (a cluster's "
                    f"node), download {chosen.url} elsewhere and copy it to {cached(chosen.url)}; "
                    "or `model.weights=null`"
                ) from None
        else:
            self.net = torchvision.models.get_model(arch, weights=None)
        parent, name, old = last_linear(self.net)
        if freeze_backbone:
            for p in self.net.parameters():
                p.requires_grad_(False)
        setattr(parent, name, nn.Linear(old.in_features, num_classes))
        self.gray = input_shape[0] == 1
        self.input_size = input_size

    def forward(self, x: Tensor) -> Tensor:
        if self.gray:
            x = x.expand(-1, 3, -1, -1)
        if self.input_size and x.shape[-1] != self.input_size:
            size = (self.input_size, self.input_size)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        return self.net(x)
