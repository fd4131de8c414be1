"""Typed schemas of the config groups (Hydra structured configs), made from the signatures of
the classes the configs build, and registered in Hydra's ConfigStore.

Each option of a group (``loss=focal``, ``optimizer=adam``, ``trainer=default``) names its schema
in its defaults list (``- /schema/loss@_here_: focal``), so Hydra checks it when it composes:
a value of the wrong type (``optimizer.lr=abc``) or a key that the class does not take
(``+loss.foo=1``) stops the run before anything starts. The schema of a class is its
``__init__``'s keyword parameters with their defaults and types, so a parameter added to a loss
is a config key at once and no list is kept twice. Types OmegaConf cannot check (unions of
several primitives, tensors, callbacks) become ``Any``; the class checks those itself.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING
from torch import Tensor

from lossbench.errors import LossbenchError

PRIMITIVES = (bool, int, float, str)
SCHEMA_GROUP = "schema"  # ConfigStore group: schema/<group>/<option>


def config_type(annotation: Any) -> Any:
    """The OmegaConf type for a parameter annotation: ``float | Tensor`` → ``float`` (a tensor
    cannot come from a config), ``int | None`` → ``Optional[int]``, ``Sequence[int]`` →
    ``list[int]``; what OmegaConf cannot check exactly (``int | float``, which Lightning tells
    apart; ``str | Accelerator``; a class) → ``Any``."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return Any
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return config_type(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(annotation) if m not in (type(None), Tensor)]
        kinds = {config_type(m) for m in members}
        inner = kinds.pop() if len(kinds) == 1 else Any
        optional = type(None) in typing.get_args(annotation)
        return Optional[inner] if optional and inner is not Any else inner  # noqa: UP045
    if origin is Literal:
        values = typing.get_args(annotation)
        return str if all(isinstance(v, str) for v in values) else Any
    if origin in (list, tuple, Sequence, Iterable) or annotation in (list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        element = {config_type(a) for a in args}
        if len(element) == 1 and (item := element.pop()) in PRIMITIVES:
            return list[item]
        return Any
    if annotation in PRIMITIVES:
        return annotation
    return Any


def _field(annotation: Any, default: Any) -> tuple[Any, Any]:
    kind = config_type(annotation)
    if default is inspect.Parameter.empty:
        return kind, field(default=MISSING)
    if isinstance(default, tuple | list):
        return kind, field(default_factory=lambda d=default: list(d))
    ok = default is None or isinstance(default, PRIMITIVES)
    return (kind if ok else Any), field(default=default if ok else None)


def schema_of(
    cls: Callable[..., Any],
    name: str,
    skip: Iterable[str] = (),
    extra: Sequence[tuple[str, Any, Any]] = (),
) -> type:
    """A dataclass of ``cls``'s keyword parameters (minus ``skip``), plus ``extra`` fields
    ``(name, type, field)``. ``**kwargs`` are taken as the parameters of where the class passes
    them (:func:`_passes_to`)."""
    init = cls.__init__ if inspect.isclass(cls) else cls
    hints = typing.get_type_hints(init, include_extras=True)
    fields: list[tuple[str, Any, Any]] = list(extra)
    skipped = {"self", *skip}
    for param in inspect.signature(init).parameters.values():
        if param.kind is param.VAR_KEYWORD and (follow := _passes_to(cls)) is not None:
            taken = {f[0] for f in fields} | {p for p in inspect.signature(init).parameters}
            inner = schema_of(follow, "_", skip=skipped | taken)
            fields += [(f.name, f.type, _copy(f)) for f in dataclasses.fields(inner)]
        elif param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or param.name in skipped:
            continue
        else:
            fields.append((param.name, *_field(hints.get(param.name, Any), param.default)))
    source = f"{getattr(cls, '__module__', '')}.{getattr(cls, '__qualname__', name)}"
    return dataclasses.make_dataclass(name, fields, namespace={"built_from": source})


def check_keys(cfg: Any, path: str = "") -> None:
    """Refuse a key that a schema does not have. Hydra's ``+key=value`` adds a key even to a
    typed node, so an unknown parameter (``+optimizer.foo=1``) is caught here, before the run
    opens, with the parameters its class does take."""
    from omegaconf import DictConfig, OmegaConf

    kind = OmegaConf.get_type(cfg)
    if dataclasses.is_dataclass(kind):
        known = [f.name for f in dataclasses.fields(kind)]
        for key in cfg:
            if key not in known:
                raise LossbenchError(f"{path}{key}: {unknown_key(kind, key)}")
    for key in cfg if isinstance(cfg, DictConfig) else ():
        if key != "hydra" and isinstance(cfg._get_node(key), DictConfig):
            check_keys(cfg[key], f"{path}{key}.")


def unknown_key(schema: type, key: str) -> str:
    """Why ``key`` is refused, with the keys ``schema`` has, and the fix."""
    owner = getattr(schema, "built_from", None)
    what = f"{owner} takes no parameter {key!r}" if owner else f"there is no key {key!r}"
    hidden = ("name", "_target_", "_partial_")
    takes = ", ".join(f.name for f in dataclasses.fields(schema) if f.name not in hidden)
    return f"{what}; it takes: {takes}. Fix: remove that override, or set one of those"


def _copy(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return field(default_factory=f.default_factory)
    return field(default=f.default)


def _passes_to(cls: Callable[..., Any]) -> Callable[..., Any] | None:
    """Where a class's ``**kwargs`` go: its ``source_cls`` (a set built on another set, e.g.
    canvases of MNIST), else its base class; a function's go nowhere."""
    if not inspect.isclass(cls):
        return None
    if getattr(cls, "source_cls", None):
        return cls.source_cls
    mro = cls.__mro__
    defining = next(i for i, c in enumerate(mro) if "__init__" in vars(c))
    return mro[defining + 1]


def _named(
    cls: Callable[..., Any], option: str, extra: Sequence[tuple[str, Any, Any]] = (), **kwargs: Any
) -> type:
    name = f"{option.title().replace('_', '')}Config"
    return schema_of(cls, name, extra=[("name", str, field(default=option)), *extra], **kwargs)


def _target(cls: type, partial: bool = False) -> list[tuple[str, Any, Any]]:
    fields = [("_target_", str, field(default=f"{cls.__module__}.{cls.__qualname__}"))]
    return fields + [("_partial_", bool, field(default=True))] if partial else fields


@dataclass
class LoggerConfig:
    """Where runs are recorded (``lossbench.tracking.mlflow_run``)."""

    tracking_uri: str = MISSING
    experiment_name: str = "lossbench"
    artifact_location: Optional[str] = None  # noqa: UP045 (OmegaConf reads typing.Optional)


@dataclass
class EarlyStoppingConfig:
    """Lightning's ``EarlyStopping``: stop a run once ``monitor`` has not improved by more than
    ``min_delta`` for ``patience`` validations (``mode``: min or max); ``patience`` null: off."""

    patience: Optional[int] = None  # noqa: UP045
    monitor: str = "val/loss"
    mode: str = "min"
    min_delta: float = 0.0


@dataclass
class TuneConfig:
    """``tune.seeds``: a job trains one run per seed and returns the mean of its
    ``optimized_metric`` (an Optuna trial scored over several seeds); null: the run's seed.
    ``tune.storage``, ``tune.study_name``, ``tune.worker``: one study shared by many workers
    (``lossbench.studies.storage``)."""

    seeds: Optional[list[int]] = None  # noqa: UP045
    # Optuna's storage (sqlite:///optuna.db, postgresql://user:pw@host/db; null: in memory) and
    # the study's name in it: workers with the same storage and name share one study
    storage: Optional[str] = None  # noqa: UP045
    study_name: Optional[str] = None  # noqa: UP045
    # this worker's index: the sampler's seed, so that workers do not propose the same trials
    worker: int = 0


TRAINER_SET_BY_LOSSBENCH = ("logger", "callbacks", "enable_progress_bar")


def target_classes(group: str) -> dict[str, type]:
    """``{option: class}`` of a group whose options name a class by ``_target_`` (optimizer)."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from lossbench.config import CONF

    return {p.stem: get_class(OmegaConf.load(p)["_target_"])
            for p in sorted((CONF / group).glob("*.yaml"))}  # fmt: skip


def group_schemas() -> dict[str, dict[str, type]]:
    """``{group: {option: schema}}`` for every registered name and every optimizer and
    trainer config."""
    import pytorch_lightning as pl

    from lossbench.data import DATASETS
    from lossbench.data.augment import AUGMENTS
    from lossbench.data.stress import ImbalanceConfig, NoiseConfig
    from lossbench.heads import HEADS
    from lossbench.losses import LOSSES
    from lossbench.models import MODELS
    from lossbench.training.schedulers import SCHEDULERS

    def registry(reg: Any, skip: Sequence[str], extra: Sequence = ()) -> dict[str, type]:
        return {n: _named(reg[n], n, extra, skip=skip) for n in reg}

    stress = [("noise", NoiseConfig, field(default_factory=NoiseConfig)),
              ("imbalance", ImbalanceConfig, field(default_factory=ImbalanceConfig))]  # fmt: skip

    trainer = schema_of(
        pl.Trainer, "TrainerConfig", skip=TRAINER_SET_BY_LOSSBENCH, extra=_target(pl.Trainer)
    )
    return {
        "dataset": registry(DATASETS, ("data_dir", "shuffle_seed"), stress),
        "model": registry(MODELS, ("input_shape", "num_classes")),
        "head": registry(HEADS, ()),
        "loss": registry(LOSSES, ()),
        "augment": registry(AUGMENTS, ("input_shape",)),
        "scheduler": registry(SCHEDULERS, ("optimizer", "total_steps", "steps_per_epoch")),
        "optimizer": {
            n: schema_of(c, f"{c.__name__}Config", skip=("params",), extra=_target(c, True))
            for n, c in target_classes("optimizer").items()
        },
        "trainer": {"default": trainer},
        "logger": {"mlflow": LoggerConfig},
    }


def run_schema() -> type:
    """The top level of a run's config: the groups, the checkpoint and the run's own keys."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    checkpoint = schema_of(ModelCheckpoint, "CheckpointConfig", skip=("dirpath",))
    groups = ("dataset", "augment", "model", "head", "loss", "optimizer", "scheduler", "trainer",
              "logger")  # fmt: skip
    fields: list[tuple[str, Any, Any]] = [(g, Any, field(default=MISSING)) for g in groups]
    fields += [
        ("checkpoint", checkpoint, field(default_factory=checkpoint)),
        ("early_stopping", EarlyStoppingConfig, field(default_factory=EarlyStoppingConfig)),
        ("seed", int, field(default=42)),
        ("root_dir", str, field(default=MISSING)),
        ("data_dir", str, field(default=MISSING)),
        ("output_dir", str, field(default=MISSING)),
        ("output_roots", list[str], field(default_factory=list)),
        ("rerun", bool, field(default=False)),
        ("resume", Optional[str], field(default=None)),  # noqa: UP045
        ("compile", bool, field(default=False)),
        ("save_weights", bool, field(default=True)),
        ("test_on", str, field(default="best")),
        ("progress_bar", str, field(default="auto")),
        ("optimized_metric", Optional[str], field(default=None)),  # noqa: UP045
        ("tuned_lr", Any, field(default=None)),
        ("tune", TuneConfig, field(default_factory=TuneConfig)),
    ]
    return dataclasses.make_dataclass("RunConfig", fields)


_registered = False


def register() -> None:
    """Store every schema in Hydra's ConfigStore (once per process): the top level as
    ``lossbench_schema``, the groups' as ``schema/<group>/<option>``."""
    global _registered
    if _registered:
        return
    store = ConfigStore.instance()
    store.store(name="lossbench_schema", node=run_schema())
    for group, options in group_schemas().items():
        for option, schema in options.items():
            store.store(group=f"{SCHEMA_GROUP}/{group}", name=option, node=schema)
    _registered = True
