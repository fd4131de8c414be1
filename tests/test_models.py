"""The networks (CIFAR ResNets, torchvision classifiers), the learning-rate schedules and the
augmentations, against what their sources state."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from lossbench.data.augment import make_augment
from lossbench.errors import LossbenchError
from lossbench.models import make_model
from lossbench.models.torchvision_models import expected_inputs
from lossbench.training.schedulers import SCHEDULERS

# He et al. 2016, Table 6: parameters of the CIFAR-10 ResNets by depth.
PAPER_PARAMS = {20: 0.27e6, 32: 0.46e6, 44: 0.66e6, 56: 0.85e6, 110: 1.7e6}


@pytest.mark.parametrize("depth", list(PAPER_PARAMS))
def test_cifar_resnets_have_the_papers_size(depth: int) -> None:
    model = make_model("resnet_cifar", (3, 32, 32), 10, depth=depth)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - PAPER_PARAMS[depth]) / PAPER_PARAMS[depth] < 0.03, n
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == depth  # 6n + 1 convolutions and the linear layer
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_resnet_adapts_to_gray_and_other_sizes_and_refuses_bad_depths() -> None:
    gray = make_model("resnet_cifar", (1, 28, 28), 7, depth=20)
    assert gray(torch.zeros(3, 1, 28, 28)).shape == (3, 7)
    with pytest.raises(LossbenchError, match="depth 6n\\+2"):
        make_model("resnet_cifar", (3, 32, 32), 10, depth=21)


@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_b0", "convnext_tiny", "vit_b_16"])
def test_torchvision_classifiers_get_a_new_last_layer(arch: str) -> None:
    size = 224 if arch == "vit_b_16" else 32
    model = make_model("torchvision", (1, size, size), 5, arch=arch)  # gray, repeated to RGB
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears[-1].out_features == 5
    assert model.eval()(torch.zeros(2, 1, size, size)).shape == (2, 5)


def test_linear_probe_trains_the_new_layer_only() -> None:
    model = make_model("torchvision", (3, 32, 32), 4, arch="resnet18", freeze_backbone=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"net.fc.weight", "net.fc.bias"}


def test_pretrained_inputs_follow_the_weights_transforms() -> None:
    """ImageNet weights of torchvision expect 224-pixel crops normalised with ImageNet's
    mean/std (read from the weights' metadata: nothing is downloaded)."""
    size, mean, std = expected_inputs("resnet18", "IMAGENET1K_V1")
    assert size == 224 and mean == [0.485, 0.456, 0.406] and std == [0.229, 0.224, 0.225]
    with pytest.raises(LossbenchError, match="not a weights name of resnet18; it has: DEFAULT"):
        expected_inputs("resnet18", "IMAGENET9K")
    with pytest.raises(LossbenchError, match="is not a classifier of torchvision.models"):
        make_model("torchvision", (3, 32, 32), 4, arch="resnet19")


def schedule(name: str, steps: int, per_epoch: int, **params) -> list[float]:
    layer = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    scheduler = SCHEDULERS[name](optimizer, steps, per_epoch, **params)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_cosine_with_warmup() -> None:
    """Linear warm-up from lr/1000 over w steps, then lr_t = min + (lr - min)(1 + cos(pi t/T))/2
    over the T = total - w remaining steps (Loshchilov & Hutter 2017, Eq. 5)."""
    rates = schedule("cosine", 50, 10, warmup_epochs=1, min_lr=0.001)
    assert rates[0] == pytest.approx(1e-4) and rates[10] == pytest.approx(0.1)
    for t in range(40):
        want = 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t / 40)) / 2
        assert rates[10 + t] == pytest.approx(want, rel=1e-6)


def test_step_schedule_and_onecycle() -> None:
    rates = schedule("step", 40, 10, milestones=[1, 3], gamma=0.1)
    assert rates[9] == pytest.approx(0.1) and rates[10] == pytest.approx(0.01)
    assert rates[30] == pytest.approx(0.001)
    cycle = schedule("onecycle", 100, 10, max_lr=0.5, pct_start=0.3)
    peak = max(range(100), key=cycle.__getitem__)
    assert cycle[peak] == pytest.approx(0.5) and abs(peak - 29) <= 1
    assert cycle[0] == pytest.approx(0.5 / 25)  # OneCycleLR's div_factor
    with pytest.raises(LossbenchError, match="warmup_epochs=5 is 50 steps, the whole run"):
        schedule("cosine", 50, 10, warmup_epochs=5)


def test_augmentations_draw_per_image_and_keep_the_shape() -> None:
    torch.manual_seed(0)
    image = torch.arange(3 * 16 * 16, dtype=torch.int64).reshape(3, 16, 16).to(torch.uint8)
    flip_crop = make_augment("flip_crop", (3, 16, 16))
    outs = [flip_crop(image) for _ in range(20)]
    assert all(o.shape == image.shape and o.dtype == torch.uint8 for o in outs)
    assert len({o.numpy().tobytes() for o in outs}) > 5  # each call draws its own flip and crop
    rand = make_augment("randaugment", (3, 16, 16), num_ops=2, magnitude=9)
    assert rand(image).shape == image.shape
    with pytest.raises(LossbenchError, match="augment=flip_crop transforms images"):
        make_augment("flip_crop", (12,))


def test_pretrained_weights_that_cannot_be_fetched_are_refused(tmp_path, monkeypatch) -> None:
    """torchvision's real download, through a proxy that refuses (no network in tests), into an
    empty cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(
        LossbenchError, match="IMAGENET1K_V1 of resnet18 could not be loaded"
    ) as err:
        make_model("torchvision", (3, 32, 32), 4, arch="resnet18", weights="IMAGENET1K_V1")
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    target = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert f"download {url} elsewhere and copy it to {target}" in str(err.value)
    # what the message says works: the file copied there is loaded, nothing downloaded
    target.parent.mkdir(parents=True, exist_ok=True)
    saved = torchvision.models.resnet18(num_classes=1000).state_dict()
    torch.save(saved, target)
    model = make_model("torchvision", (3, 32, 32), 4, arch="resnet18", weights="IMAGENET1K_V1")
    loaded = model.net.state_dict()
    assert torch.equal(loaded["conv1.weight"], saved["conv1.weight"])
    assert loaded["fc.weight"].shape == (4, 512)  # the last layer replaced for 4 classes
