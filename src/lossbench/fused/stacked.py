"""M networks of one architecture as one module: their parameters stacked, one forward pass.

A member's input is ``x[m]`` of a batch ``(M, B, ...)``, or one batch ``(B, ...)`` shared by
all (evaluation). Each layer keeps the members apart exactly:

- ``Linear``: weights ``(M, out, in)``, ``y[m] = x[m] W[m]^T + b[m]`` (one ``baddbmm``);
- ``Conv2d``: the members' filters concatenated, one grouped convolution (``groups = M``) over
  the members' channels side by side ``(B, M·C, H, W)``;
- ``BatchNorm2d``: over those ``M·C`` channels, so each member normalises by its own batch
  statistics and keeps its own running mean and variance (unlike BatchNorm under ``vmap``);
- ``Dropout``: on the CPU each member draws its mask from its own generator, holding the RNG
  state its sequential run would have, so its masks are the sequential run's; on a GPU one
  mask is drawn for all members (CUDA's dropout kernel draws differently anyway).

Only networks that are a plain sequence of these layers (and ReLU, MaxPool2d, Flatten,
Identity, and a two-class set's ``BinaryLogit``) can be stacked: lossbench's ``mlp`` and ``cnn``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lossbench.models.registry import BinaryLogit

STACKABLE = (nn.Flatten, nn.Linear, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Dropout,
             nn.Identity, BinaryLogit)  # fmt: skip


def leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's leaf modules in registration order (its forward order, for a sequence)."""
    return [(name, m) for name, m in model.named_modules() if not list(m.children())]


def why_not_stackable(model: nn.Module) -> str | None:
    """None if :class:`StackedNet` can stack copies of ``model``, else the reason."""
    if not getattr(model, "sequential", False):
        return f"{type(model).__name__} is not declared a plain sequence of layers"
    for name, layer in leaves(model):
        if not isinstance(layer, STACKABLE):
            return f"layer {name} ({type(layer).__name__}) cannot be stacked"
        if isinstance(layer, nn.Conv2d) and (layer.groups != 1 or layer.padding_mode != "zeros"):
            return f"layer {name}: grouped or non-zero-padded convolutions cannot be stacked"
    return None


class StackedNet(nn.Module):
    """``len(models)`` copies of one architecture, initialised from ``models``' own weights.

    ``generators``: per member, the CPU generator its dropout masks come from (None: one
    mask for all members from the global RNG, as on a GPU).
    """

    def __init__(
        self, models: Sequence[nn.Module], generators: Sequence[torch.Generator] | None = None
    ) -> None:
        super().__init__()
        if (why := why_not_stackable(models[0])) is not None:  # forward would skip the layer
            raise ValueError(f"these networks cannot be stacked: {why}")
        self.members = len(models)
        self.generators = list(generators) if generators is not None else None
        per_member = [leaves(m) for m in models]
        self.names = [name for name, _ in per_member[0]]
        self.layers = [layer for _, layer in per_member[0]]  # settings only; weights below
        self.params = nn.ParameterDict()
        for i, layer in enumerate(self.layers):
            copies = [leaf[i][1] for leaf in per_member]
            join = torch.stack if isinstance(layer, nn.Linear) else torch.cat  # see _slice
            for kind, attr in (("w", "weight"), ("b", "bias")):
                if getattr(layer, attr, None) is not None:
                    weights = join([getattr(c, attr).detach() for c in copies])
                    self.params[f"{i}_{kind}"] = nn.Parameter(weights)
            if isinstance(layer, nn.BatchNorm2d) and layer.track_running_stats:
                for stat in ("running_mean", "running_var"):
                    self.register_buffer(
                        f"b{i}_{stat}", torch.cat([getattr(c, stat) for c in copies])
                    )
                counts = torch.stack([c.num_batches_tracked for c in copies])
                self.register_buffer(f"b{i}_count", counts)

    def _param(self, i: int, kind: str) -> Tensor | None:
        key = f"{i}_{kind}"
        return self.params[key] if key in self.params else None  # noqa: SIM401

    def forward(self, x: Tensor, shared: bool = False) -> Tensor:
        """Logits ``(M, B, classes)`` of ``x``: ``(M, B, ...)``, or ``(B, ...)`` if ``shared``."""
        m = self.members
        grouped = False  # (B, M·C, H, W) rather than (M, B, ...)
        for i, layer in enumerate(self.layers):
            if isinstance(layer, nn.Conv2d | nn.BatchNorm2d) and not grouped:
                if shared:
                    x = x.repeat(1, m, 1, 1)
                else:
                    x = x.transpose(0, 1).reshape(x.shape[1], -1, *x.shape[3:])
                grouped, shared = True, False
            if isinstance(layer, nn.Conv2d):
                x = F.conv2d(x, self._param(i, "w"), self._param(i, "b"), layer.stride,
                             layer.padding, layer.dilation, m)  # fmt: skip
            elif isinstance(layer, nn.BatchNorm2d):
                x = self._batch_norm(i, layer, x)
            elif isinstance(layer, nn.Flatten):
                if grouped:
                    x = x.reshape(x.shape[0], m, -1).transpose(0, 1)
                    grouped = False
                elif shared:
                    x = x.flatten(1).expand(m, *x.flatten(1).shape)
                    shared = False
                else:
                    x = x.flatten(2)
            elif isinstance(layer, nn.Linear):
                if shared:
                    x, shared = x.expand(m, *x.shape), False
                w, b = self._param(i, "w"), self._param(i, "b")
                x = torch.bmm(x, w.transpose(1, 2)) if b is None else torch.baddbmm(
                    b.unsqueeze(1), x, w.transpose(1, 2))  # fmt: skip
            elif isinstance(layer, nn.Dropout):
                x = self._dropout(layer, x, grouped or shared)
            elif isinstance(layer, nn.ReLU | nn.MaxPool2d | nn.Identity | BinaryLogit):
                x = layer(x)
        return x.expand(m, *x.shape) if shared else x

    def _batch_norm(self, i: int, layer: nn.BatchNorm2d, x: Tensor) -> Tensor:
        key = f"b{i}"
        tracked = layer.track_running_stats
        mean = getattr(self, f"{key}_running_mean") if tracked else None
        var = getattr(self, f"{key}_running_var") if tracked else None
        momentum = layer.momentum
        if self.training and tracked:
            count = getattr(self, f"{key}_count")
            count.add_(1)
            if momentum is None:  # a cumulative average: the same count for every member
                momentum = 1.0 / float(count[0])
        use_batch = self.training or not tracked
        return F.batch_norm(x, mean, var, self._param(i, "w"), self._param(i, "b"), use_batch,
                            momentum or 0.0, layer.eps)  # fmt: skip

    def _dropout(self, layer: nn.Dropout, x: Tensor, grouped: bool) -> Tensor:
        if not self.training or layer.p == 0:  # as torch: no draw at p = 0
            return x
        if grouped:
            raise RuntimeError("dropout between stacked convolutions is not supported")
        if self.generators is None or x.device.type != "cpu":
            return F.dropout(x, layer.p, True)
        keep = 1 - layer.p
        noise = torch.stack([torch.empty(x.shape[1:]).bernoulli_(keep, generator=g)
                             for g in self.generators])  # fmt: skip
        return x * noise.div_(keep)  # torch's dropout: input * (bernoulli(1 - p) / (1 - p))

    def member_state(self, member: int) -> dict[str, Tensor]:
        """Member ``member``'s weights and statistics under its own model's state-dict names."""
        out: dict[str, Tensor] = {}
        for i, (name, layer) in enumerate(zip(self.names, self.layers, strict=True)):
            for kind, attr in (("w", "weight"), ("b", "bias")):
                p = self._param(i, kind)
                if p is not None:
                    out[f"{name}.{attr}"] = self._slice(p, member, layer)
            if isinstance(layer, nn.BatchNorm2d) and layer.track_running_stats:
                for stat in ("running_mean", "running_var"):
                    stats = getattr(self, f"b{i}_{stat}")
                    out[f"{name}.{stat}"] = self._slice(stats, member, layer)
                out[f"{name}.num_batches_tracked"] = getattr(self, f"b{i}_count")[member]
        return {k: v.detach().clone() for k, v in out.items()}

    def load_member(self, member: int, state: dict[str, Tensor]) -> None:
        """Put ``state`` (as :meth:`member_state` gives it) back into member ``member``."""
        with torch.no_grad():
            for i, (name, layer) in enumerate(zip(self.names, self.layers, strict=True)):
                for kind, attr in (("w", "weight"), ("b", "bias")):
                    p = self._param(i, kind)
                    if p is not None:
                        self._slice(p, member, layer).copy_(state[f"{name}.{attr}"])
                if isinstance(layer, nn.BatchNorm2d) and layer.track_running_stats:
                    for stat in ("running_mean", "running_var"):
                        target = self._slice(getattr(self, f"b{i}_{stat}"), member, layer)
                        target.copy_(state[f"{name}.{stat}"])
                    getattr(self, f"b{i}_count")[member] = state[f"{name}.num_batches_tracked"]

    def _slice(self, t: Tensor, member: int, layer: nn.Module) -> Tensor:
        if isinstance(layer, nn.Linear):
            return t[member]
        size = t.shape[0] // self.members  # Conv2d / BatchNorm2d: members side by side
        return t[member * size : (member + 1) * size]
