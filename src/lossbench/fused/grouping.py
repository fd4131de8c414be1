"""Which jobs of a sweep can train side by side: the fused launcher's groups.

Jobs share one training loop when their configs agree on everything but ``seed``, ``head``,
``loss`` (with its parameters), the label noise (``dataset.noise.*``: it changes targets, not
inputs) and, with a constant learning rate, ``optimizer.lr``: the same dataset and other data
options (class imbalance keeps other samples), model, optimizer settings, schedule and trainer
settings. A job is trained on its own (a group of one) where its config cannot be fused;
:func:`why_alone` says why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

# what may differ within a group (and where each job writes)
PER_MEMBER = ("seed", "head", "loss", "output_dir", "resume")
ELEMENTWISE_OPTIMIZERS = ("torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD")
PRECISIONS = ("32-true", "32", "bf16-mixed")


@dataclass
class Group:
    """Job indices (into the sweep's list) trained together; ``alone``: why a group of one."""

    jobs: list[int]
    alone: str | None = None


def refused_pair(cfg: DictConfig) -> str | None:
    """Why the job's head and loss are refused (it will be skipped: its pair makes no sense
    on its dataset, or a tuned comparison did not tune it), or None."""
    from lossbench.errors import InvalidPair
    from lossbench.training.run import check_pair

    try:
        check_pair(cfg)
    except InvalidPair as err:
        return str(err)
    except Exception:  # anything else is for the job itself to report
        return None
    return None


def why_alone(cfg: DictConfig) -> str | None:
    """None if this job can be fused with others of its kind, else the reason it cannot."""
    if (refused := refused_pair(cfg)) is not None:
        return f"skipped, {refused.split(':')[0]}"
    from lossbench.models import MODELS  # the registry, to ask the model class

    t = cfg.trainer
    model = MODELS[cfg.model.name] if cfg.model.name in MODELS else None  # noqa: SIM401
    reasons = {
        f"model={cfg.model.name} is not a plain sequence of layers (mlp and cnn are)":
            model is None or not getattr(model, "sequential", False),
        f"augment={cfg.augment.name} (augmentation is per run)": cfg.augment.name != "none",
        "dataset.in_memory=false (a fused group shares one in-memory split)":
            cfg.dataset.get("in_memory", "auto") is False,
        "compile=true": bool(cfg.compile),
        "tune.seeds (a tuning trial runs its seeds in turn)": bool(cfg.tune.seeds),
        "resume= (a resumed run continues alone)": bool(cfg.resume),
        f"optimizer {cfg.optimizer._target_} (fused: Adam, AdamW, SGD)":
            cfg.optimizer._target_ not in ELEMENTWISE_OPTIMIZERS,
        f"trainer.precision={t.precision} (fused: {', '.join(PRECISIONS)})":
            str(t.precision) not in PRECISIONS,
        "trainer.gradient_clip_val (clipping by each run's own norm)":
            t.gradient_clip_val not in (None, 0),
        "trainer.accumulate_grad_batches > 1": t.accumulate_grad_batches != 1,
        "several devices or nodes (fused groups train on one device)":
            str(t.devices) not in ("1", "auto") or t.num_nodes != 1
            or str(t.strategy) not in ("auto",),
    }  # fmt: skip
    return next((why for why, bad in reasons.items() if bad), None)


def key(cfg: DictConfig) -> str:
    """What a group's jobs share: the config, its interpolations resolved (a value such as
    ``optimizer.lr='${tuned_lr.${head.name}.${loss.name}}'`` differs by member though its text
    does not), without its per-member keys. With a constant learning rate
    (``scheduler=none``), ``optimizer.lr`` is per member too: the fused loop scales each
    member's update by its lr (``lossbench.fused.loop``)."""
    shared = resolved(cfg)
    for name in PER_MEMBER:
        shared.pop(name, None)
    if isinstance(shared.get("dataset"), dict):
        shared["dataset"].pop("noise", None)  # each member its own targets
    shared.get("trainer", {}).pop("default_root_dir", None)
    shared.get("tune", {}).pop("study_name", None)  # an Optuna study's name: not the training
    if cfg.scheduler.name == "none" and isinstance(shared.get("optimizer"), dict):
        shared["optimizer"].pop("lr", None)  # each member its own lr
    return json.dumps(shared, sort_keys=True, default=str)


def resolved(cfg: DictConfig) -> dict:
    """The config as plain data without Hydra's node (each job's own), each interpolation
    resolved where the config can resolve it before its job runs
    (``${hydra:runtime.output_dir}`` cannot: its text stays)."""
    data = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(data, dict)
    data.pop("hydra", None)

    def walk(node: dict | list, path: str) -> None:
        for k, v in list(node.items() if isinstance(node, dict) else enumerate(node)):
            where = f"{path}.{k}" if path else str(k)
            if isinstance(v, dict | list):
                walk(v, where)
            elif isinstance(v, str) and "${" in v:
                try:
                    value = OmegaConf.select(cfg, where, throw_on_resolution_failure=True)
                except Exception:  # e.g. Hydra's job folder, set when the job runs
                    continue
                node[k] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value

    walk(data, "")
    return data


def plan(configs: Sequence[DictConfig], max_group: int) -> list[Group]:
    """The sweep's jobs (their configs, in order) as groups of at most ``max_group``, the jobs
    of one kind split into as few groups as that allows, of even sizes."""
    groups: dict[str, list[int]] = {}
    out: list[Group] = []
    for i, cfg in enumerate(configs):
        why = why_alone(cfg)
        if why is not None:
            out.append(Group([i], why))
        else:
            groups.setdefault(key(cfg), []).append(i)
    for jobs in groups.values():
        parts = -(-len(jobs) // max_group)  # as few groups as max_group allows, of even sizes
        alone = "the only job of its kind" if len(jobs) == 1 else (
            f"hydra.launcher.max_group={max_group} splits its kind")  # fmt: skip
        for k in range(parts):  # (72 jobs, max 64: 36 + 36, not 64 + 8)
            chunk = jobs[k * len(jobs) // parts : (k + 1) * len(jobs) // parts]
            out.append(Group(chunk, None if len(chunk) > 1 else alone))
    return sorted(out, key=lambda g: g.jobs[0])


def describe(groups: Sequence[Group], labels: Sequence[str]) -> list[str]:
    """One log line per group: its jobs (by ``labels``) and, for a group of one, why."""
    lines = []
    for n, g in enumerate(groups, 1):
        what = f"fused, {len(g.jobs)} runs" if g.alone is None else f"alone: {g.alone}"
        shown = [labels[i] for i in g.jobs[:4]]
        more = f", ... ({len(g.jobs) - 4} more)" if len(g.jobs) > 4 else ""
        names = ", ".join(shown) + more
        lines.append(f"group {n} ({what}): {names}")
    return lines
