"""A sweep's job configs, as Hydra's ``load_sweep_config`` composes them, composed once per
distinct set of config-group choices.

Hydra composes every job of a sweep from scratch: it reads and merges every YAML file and
schema of the defaults tree again, ~0.13 s a job here, 11 s for the 84 jobs of the
multi-class grid over three seeds. Jobs that differ only in config values (``seed=2``,
``loss.gamma=3``) have the same defaults tree, so a job's config is the first such job's
config with the job's own values put in: the same value overrides applied the same way
(Hydra's own ``_apply_overrides_to_config``), its own ``hydra.overrides.task`` and
``hydra.job.override_dirname``. Everything else (a config-group choice, ``+key``/``~key``,
a dict or list value, any ``hydra.*`` override) is part of the key, so it is composed by
Hydra. tests/test_fused.py compares every job's config with Hydra's own composition.

Hydra's sweepers compose every job once more before launching it, to check that it composes
(``Sweeper.validate_batch_is_legal``), through the same config loader: the fused launcher
puts a :class:`CachingConfigLoader` there, so the check composes once per key too and the
launcher gets each checked config itself.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.config_loader import ConfigLoader
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf


class SweepComposer:
    """``compose(overrides)`` returns what ``loader.load_sweep_config(master, overrides)``
    returns; ``composed`` and ``reused`` count the jobs composed by Hydra and the others."""

    def __init__(self, loader: ConfigLoader, master: DictConfig) -> None:
        self.loader, self.master = loader, master
        self.config_name = master.hydra.job.config_name
        self.master_overrides = list(OmegaConf.to_container(master.hydra.overrides.hydra))
        self.parser = OverridesParser.create()
        self.groups: dict[str, set[str]] = {}
        self.cache: dict[tuple[object, ...], DictConfig] = {}
        self.composed = self.reused = 0

    def is_group(self, key: str) -> bool:
        """Whether ``key`` names a config group (where Hydra looks for them in this sweep)."""
        parent, _, name = key.rpartition("/")
        if parent not in self.groups:
            self.groups[parent] = set(self.loader.get_group_options(
                parent, ObjectType.GROUP, self.config_name, self.master_overrides))  # fmt: skip
        return name in self.groups[parent]

    def is_value(self, override: Override) -> bool:
        """A plain ``key=value`` of one config value: applied to a copy without composing."""
        return (
            override.type == OverrideType.CHANGE
            and override.package is None
            and override.value_type == ValueType.ELEMENT
            and not override.is_hydra_override()
            and not isinstance(override.value(), dict | list)
            and not self.is_group(override.key_or_group)
        )

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(list(overrides))
        values = [o for o in parsed if self.is_value(o)]
        key = tuple(("value", o.key_or_group) if o in values else o.input_line for o in parsed)
        first = self.cache.get(key)
        if first is not None:
            try:
                config = copy.deepcopy(first)
                ConfigLoaderImpl._apply_overrides_to_config(values, config)
                app = [o for o in parsed if not o.is_hydra_override()]
                config.hydra.overrides.task = [o.input_line for o in app]
                naming = config.hydra.job.config.override_dirname
                config.hydra.job.override_dirname = get_overrides_dirname(
                    overrides=app, kv_sep=naming.kv_sep, item_sep=naming.item_sep,
                    exclude_keys=naming.exclude_keys,
                )  # fmt: skip
                OmegaConf.copy_cache(from_config=self.master, to_config=config)
                self.reused += 1
                return config
            except Exception:  # noqa: BLE001  (Hydra's own composition says what is wrong)
                pass
        config = self.loader.load_sweep_config(self.master, list(overrides))
        self.composed += 1
        if key not in self.cache:  # (after a copy that failed, the first one stays)
            self.cache[key] = copy.deepcopy(config)
        return config


class CachingConfigLoader(ConfigLoader):
    """Hydra's config loader, with ``load_sweep_config`` through a :class:`SweepComposer` per
    master config. A job the sweeper's check composed (``load_sweep_config``, whose result the
    check discards) is kept, and handed over once to the launcher (:meth:`take`);
    :meth:`forget` drops the rest (the launcher calls it once it has its batch). Everything
    else is delegated."""

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self.composers: dict[int, SweepComposer] = {}
        self.done: dict[tuple[int, tuple[str, ...]], tuple[DictConfig, DictConfig]] = {}

    @classmethod
    def install(cls, context: HydraContext) -> CachingConfigLoader:
        """Put one into ``context`` (shared by the sweeper and the launcher), once."""
        if not isinstance(context.config_loader, cls):
            context.config_loader = cls(context.config_loader)
        return context.config_loader

    def composer(self, master: DictConfig) -> SweepComposer:
        composer = self.composers.get(id(master))
        if composer is None or composer.master is not master:
            composer = self.composers[id(master)] = SweepComposer(self.loader, master)
        return composer

    def load_sweep_config(
        self, master_config: DictConfig, sweep_overrides: list[str]
    ) -> DictConfig:
        """The job's config, kept for the launcher's :meth:`take` (not copied: Hydra's
        ``Sweeper.validate_batch_is_legal`` only checks that it composes)."""
        config = self.take(master_config, sweep_overrides)
        self.done[(id(master_config), tuple(sweep_overrides))] = (master_config, config)
        return config

    def take(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """The job's config for the launcher: the one kept by the check, else composed."""
        key = (id(master_config), tuple(sweep_overrides))
        master, config = self.done.pop(key, (None, None))
        if master is master_config and config is not None:
            return config
        return self.composer(master_config).compose(sweep_overrides)

    def forget(self) -> None:
        """Drop the kept configs (of jobs checked but not launched)."""
        self.done.clear()

    def load_configuration(self, *args: Any, **kwargs: Any) -> DictConfig:
        return self.loader.load_configuration(*args, **kwargs)

    def get_search_path(self) -> Any:
        return self.loader.get_search_path()

    def get_sources(self) -> Any:
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> list[str]:
        return self.loader.list_groups(parent_name)

    def get_group_options(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.loader.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args: Any, **kwargs: Any) -> Any:
        return self.loader.compute_defaults_list(*args, **kwargs)
