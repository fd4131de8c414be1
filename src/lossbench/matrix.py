"""Which (task, head, loss) triples make sense, derived from what each loss declares.

A triple is valid when
* the loss assumes the head's probability model (``loss.link == head``): ``ce``/``nll`` are
  categorical (softmax), ``bce``/``bce_logits`` are one-vs-all Bernoulli (sigmoid); and
* the task can give the loss its target form: class indices exist only for a multi-class task,
  while one-hot targets can be made from class indices (one-vs-all) and multi-hot ones are given.

``python -m lossbench.matrix`` prints the table.
"""

from __future__ import annotations

from lossbench.errors import InvalidPair
from lossbench.heads import HEADS, Task
from lossbench.losses import LOSSES

TASKS: tuple[Task, ...] = ("multiclass", "multilabel")


def is_valid(task: Task, head: str, loss: str) -> bool:
    spec = LOSSES[loss]
    HEADS[head]  # unknown names fail with the registry's message
    return spec.link == head and not (task == "multilabel" and spec.target == "index")


def valid_losses(task: Task, head: str) -> list[str]:
    return [name for name in LOSSES if is_valid(task, head, name)]


def check(task: Task, head: str, loss: str) -> None:
    """Raise :class:`InvalidPair` naming the valid losses unless the triple is valid."""
    if is_valid(task, head, loss):
        return
    spec = LOSSES[loss]
    why = (
        f"it assumes the {spec.link} head"
        if spec.link != head
        else "it needs class-index targets, which a multi-label task does not have"
    )
    allowed = valid_losses(task, head)
    fix = f"`loss={allowed[0]}`" if allowed else "another head"
    raise InvalidPair(
        f"head={head} cannot be trained with loss={loss} on a {task} dataset: {why}. "
        f"Valid losses for head={head} on a {task} dataset: {', '.join(allowed) or 'none'}. "
        f"Fix: choose {fix}."
    )


def table() -> list[tuple[str, str, str, bool]]:
    """Every (task, head, loss, valid) row, in registry order."""
    return [
        (task, head, loss, is_valid(task, head, loss))
        for task in TASKS
        for head in HEADS
        for loss in LOSSES
    ]


def markdown() -> str:
    """The matrix as a markdown table: one row per (task, head), the valid losses listed."""
    lines = ["| task | head | valid losses | refused |", "|---|---|---|---|"]
    for task in TASKS:
        for head in HEADS:
            ok = valid_losses(task, head)
            bad = [name for name in LOSSES if name not in ok]
            lines.append(f"| {task} | {head} | {', '.join(ok)} | {', '.join(bad)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
