"""The fused launcher: a sweep's jobs grouped (``lossbench.fused.grouping``), each group of
several trained side by side (``lossbench.fused.loop``), each group of one as Hydra's basic
launcher runs a job. Every job keeps its own output folder, ``.hydra`` configs, MLflow run and
``outcome.json``, so the sweep's summary, the report and the sweepers work unchanged.

Modelled on Hydra's ``BasicLauncher``. lossbench itself is imported when the launcher runs,
not when Hydra discovers its plugins.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger("lossbench")


class FusedLauncher(Launcher):
    def __init__(self, max_group: int = 64) -> None:
        super().__init__()
        self.max_group = max_group
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None
        self.loader: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from lossbench.fused.compose import CachingConfigLoader

        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        self.loader = CachingConfigLoader.install(hydra_context)  # the sweeper's check uses it

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from lossbench.errors import LossbenchError
        from lossbench.fused import grouping

        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        if self.max_group < 1:
            raise LossbenchError(
                f"hydra.launcher.max_group={self.max_group} is out of range: it must be >= 1. "
                "Fix: set e.g. `hydra.launcher.max_group=64`"
            )
        configs = []
        composer = self.loader.composer(self.config)
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            config = self.loader.take(self.config, list(overrides))
            with open_dict(config):
                config.hydra.job.id = config.hydra.job.num = idx
            configs.append(config)
        self.loader.forget()
        groups = grouping.plan(configs, self.max_group)
        # as typed: an override's own interpolation (optimizer.lr='${tuned_lr...}') unresolved
        overrides = [filter_overrides(OmegaConf.to_container(c.hydra.overrides.task))
                     for c in configs]  # fmt: skip
        common = set.intersection(*(set(o) for o in overrides)) if overrides else set()
        labels = [f"#{c.hydra.job.num} " + " ".join(o for o in job if o not in common)
                  for c, job in zip(configs, overrides, strict=True)]  # fmt: skip
        log.info("Launching %d jobs in %d groups (fused launcher, max_group=%d; %d configs "
                 "composed, %d more differing only in values)", len(configs), len(groups),
                 self.max_group, composer.composed, composer.reused)  # fmt: skip
        composer.composed = composer.reused = 0  # this batch's (the sweeper's check included)
        for line in grouping.describe(groups, labels):
            log.info("\t%s", line)
        returns: list[JobReturn | None] = [None] * len(configs)
        for number, group in enumerate(groups, 1):
            if len(group.jobs) == 1:
                i = group.jobs[0]
                returns[i] = run_job(hydra_context=self.hydra_context,
                                     task_function=self.task_function, config=configs[i],
                                     job_dir_key="hydra.sweep.dir",
                                     job_subdir_key="hydra.sweep.subdir")  # fmt: skip
            else:
                chosen = [configs[i] for i in group.jobs]
                name = f"{Path(str(self.config.hydra.sweep.dir)).name}-g{number}"
                for i, ret in zip(group.jobs, self._fused(chosen, name), strict=True):
                    returns[i] = ret
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return [r for r in returns if r is not None]

    def _fused(self, configs: list[DictConfig], group: str) -> list[JobReturn]:
        """Build every job in its own output folder (as ``run_job`` would run it), train the
        built ones side by side, and write each job's outcome."""
        from lossbench.data.base import shared_splits
        from lossbench.fused.loop import fit_group
        from lossbench.training import run, task

        built: dict[int, Any] = {}

        def builder(index: int) -> TaskFunction:
            def build(cfg: DictConfig) -> Any:
                # resolved while this job's HydraConfig is set (its output folder); a value that
                # does not resolve fails this job with its reason, as in a sequential sweep
                ended, value = task.in_sweep(cfg, lambda: run.build(cfg, resolve=True))
                if not ended:
                    built[index] = value
                return value if ended else None

            return build

        returns = []
        with shared_splits():
            for i, config in enumerate(configs):
                returns.append(run_job(hydra_context=self.hydra_context,
                                       task_function=builder(i), config=config,
                                       job_dir_key="hydra.sweep.dir",
                                       job_subdir_key="hydra.sweep.subdir"))  # fmt: skip
        if not built:
            return returns
        finished = []
        for part, name in _by_network(built, group):  # e.g. one-logit binary sigmoid heads
            finished += zip(part, fit_group([built[i] for i in part], name), strict=True)
        for i, member in finished:
            job, config, ret = member.job, configs[i], returns[i]
            HydraConfig.instance().set_config(config)  # the job's overrides, for its outcome
            run_id = job.logger.run_id
            if member.status == "FINISHED":
                task.write_outcome(job.cfg, "FINISHED", run_id=run_id)
                ret.return_value = task.objective(job.cfg, run_id)
            else:
                task.write_outcome(job.cfg, member.status, reason=member.reason, run_id=run_id)
                ret.return_value = None
            ret.status = JobStatus.COMPLETED
        return returns


def _by_network(built: dict[int, Any], group: str) -> list[tuple[list[int], str]]:
    """The built jobs by their networks' parameter shapes, each part with its group name: a
    group's members share one architecture, but a two-class set's one-logit sigmoid heads
    (``head.binary_outputs=1``) have one output where the others have two."""
    parts: dict[tuple, list[int]] = {}
    for i in sorted(built):
        model = built[i].module.model
        shapes = tuple((k, tuple(p.shape)) for k, p in model.state_dict().items())
        parts.setdefault(shapes, []).append(i)
    if len(parts) == 1:
        return [(next(iter(parts.values())), group)]
    log.info("\tgroup %s: its networks differ in shape (the outputs of a two-class set's heads):"
             " %d loops", group, len(parts))  # fmt: skip
    return [(part, f"{group}{chr(ord('a') + n)}") for n, part in enumerate(parts.values())]
