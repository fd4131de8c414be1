"""Which (task, head, loss) triples make sense, derived from what each loss and head declare.

A triple is valid when
* the loss fits the head's probability model (``head in loss.links``): ``ce``, ``nll``,
  ``ce_onehot`` and ``hinge`` are categorical (softmax); ``bce``, ``bce_logits``, ``focal``,
  ``asl`` and ``multilabel_soft_margin`` one-vs-all Bernoulli (sigmoid); ``brier`` fits both;
* the task can give the loss its target form: class indices exist only for a multi-class task;
  one-hot rows are made from class indices, multi-hot rows are given; and
* on a multi-label task, a head whose probabilities sum to one (softmax) is only trained
  towards a distribution (``ce_onehot``: the multi-hot row divided by its label count).

``python -m lossbench.matrix`` prints the table.
"""

from __future__ import annotations

from lossbench.errors import InvalidPair
from lossbench.heads import HEADS, Task
from lossbench.losses import LOSSES

TASKS: tuple[Task, ...] = ("multiclass", "multilabel")


def _refusal(task: Task, head: str, loss: str) -> str | None:
    """Why the triple is refused, or None when it is valid."""
    spec, head_cls = LOSSES[loss], HEADS[head]
    name = LOSSES.canonical(loss)
    if head not in spec.links:
        return f"{name} fits the {' or '.join(spec.links)} head"
    spec = spec.for_head(head)  # the implementation for this head: its target form
    if task == "multilabel" and spec.target == "index":
        return f"{name} needs class-index targets, which a multi-label task does not have"
    if task == "multilabel" and head_cls.exclusive and spec.target != "distribution":
        return (
            f"{head} probabilities sum to one, so they cannot match multi-hot targets with {name}"
        )
    return None


def is_valid(task: Task, head: str, loss: str) -> bool:
    return _refusal(task, head, loss) is None


def valid_losses(task: Task, head: str) -> list[str]:
    return [name for name in LOSSES if is_valid(task, head, name)]


def check(task: Task, head: str, loss: str) -> None:
    """Raise :class:`InvalidPair` naming the valid losses unless the triple is valid."""
    why = _refusal(task, head, loss)
    if why is None:
        return
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
    aliases = ", ".join(f"`{a}` → `{n}`" for a, n in LOSSES.aliases().items())
    return "\n".join(lines) + f"\n\nAliases: {aliases}."


if __name__ == "__main__":
    print(markdown())
