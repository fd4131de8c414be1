"""What ``bce`` on sigmoid probabilities does at large logits, next to ``bce_logits``.

``python -m lossbench.stability`` prints the README's table: per-element loss and its gradient
with respect to the logit, in float32 (the training dtype), against the exact values
``softplus(-z)`` (y = 1) / ``softplus(z)`` (y = 0) and ``sigmoid(z) - y``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lossbench.losses import make_criterion

LOGITS = (-100.0, -20.0, 0.0, 20.0, 100.0)


def rows() -> list[tuple[float, int, float, float, float, float, float, float]]:
    """(z, y, exact loss, bce, bce_logits, exact grad, bce grad, bce_logits grad) per case."""
    out = []
    for y in (1, 0):
        for z in LOGITS:
            exact_loss = F.softplus(torch.tensor(-z if y else z, dtype=torch.float64)).item()
            exact_grad = torch.sigmoid(torch.tensor(z, dtype=torch.float64)).item() - y
            got = []
            for loss in ("bce", "bce_logits"):
                logit = torch.tensor([[z]], requires_grad=True)
                value = make_criterion("sigmoid", loss)(logit, torch.tensor([[float(y)]]))
                value.backward()
                got.append((value.item(), logit.grad.item()))
            out.append((z, y, exact_loss, got[0][0], got[1][0], exact_grad, got[0][1], got[1][1]))
    return out


def markdown() -> str:
    lines = [
        "| z | y | exact loss | `bce` | `bce_logits` "
        "| exact dL/dz | `bce` dL/dz | `bce_logits` dL/dz |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for z, y, *values in rows():
        cells = " | ".join(f"{v + 0.0:.4g}" for v in values)  # + 0.0: no "-0"
        lines.append(f"| {z:g} | {y} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
