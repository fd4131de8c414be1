"""Hydra's task function (``train.py``): one run, a sweep's job, or a tuning trial over seeds.

A single run: a refused config raises its :class:`LossbenchError` (``train.py`` prints it and
exits 2); a failed run raises. In a sweep no job stops the others: a refused pair or an already
finished config is skipped, a failure is recorded, and each job leaves ``outcome.json`` in its
output folder for the sweep's closing summary.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from lossbench.errors import AlreadyDone, InvalidPair, LossbenchError, RunStopped
from lossbench.report.summary import OUTCOME, print_run
from lossbench.tracking import store
from lossbench.training.run import current_sweep, train

log = logging.getLogger("lossbench")


def objective(cfg: DictConfig, run_id: str) -> float | str:
    """What the task function returns for a finished run: the value of ``optimized_metric``
    in MLflow (its last logged value), or the run id when no metric is optimised."""
    if not cfg.optimized_metric:
        return run_id
    client = store.open_store(cfg.logger.tracking_uri)
    metrics = client.get_run(run_id).data.metrics
    value = metrics.get(cfg.optimized_metric)
    if value is None:
        raise LossbenchError(
            f"optimized_metric={cfg.optimized_metric} is not a metric of run {run_id}; it has "
            f"{', '.join(sorted(metrics))}. Set optimized_metric to one of them"
        )
    return value


def main(cfg: DictConfig) -> float | str | None:
    """Hydra's task function: returns the run id, or the run's ``optimized_metric`` if set.

    A single run: a refused config raises its :class:`LossbenchError` (``train.py`` prints it
    and exits 2); a failed run raises. In a sweep, no job stops the others: a refused pair or
    an already finished config is skipped (an already finished one still returns its
    ``optimized_metric``), a failure is recorded (the MLflow run ends FAILED with its reason)
    and returns None, and each job leaves ``outcome.json`` in its output dir for the sweep's
    closing summary.
    """
    if cfg.tune.seeds:
        return _over_seeds(cfg)
    if current_sweep() is None:
        run_id = train(cfg)
        if run_id is not None:  # None: the other ranks of a DDP run
            print_run(cfg.logger.tracking_uri, run_id)
            return objective(cfg, run_id)
        return None
    done, run_id = in_sweep(cfg, lambda: train(cfg))
    if done or run_id is None:
        return run_id
    write_outcome(cfg, "FINISHED", run_id=run_id)
    return objective(cfg, run_id)


def in_sweep(cfg: DictConfig, action: Callable[[], Any]) -> tuple[bool, Any]:
    """``(False, action())``, or, where the job ends before training: ``(True, value)`` after
    writing its outcome. A refused pair or an already finished config is skipped (an already
    finished one's value is its ``optimized_metric``), any other error is a failed job (value
    None). A run stopped by a signal (KILLED) stops the sweep, unless the job is a process of
    its own (a submitit/Slurm job): then it is a failed job whose reason is the resume command,
    and the job returns, so that its launcher collects a result like any job's."""
    try:
        return False, action()
    except RunStopped as err:
        if "SUBMITIT_FOLDER" not in os.environ:  # the sweep's own process: it stops
            raise
        log.error("failed: run %s is KILLED, %s", err.run_id, err.reason)
        write_outcome(cfg, "FAILED", reason=f"KILLED, {err.reason}", run_id=err.run_id)
    except (InvalidPair, AlreadyDone) as err:
        log.warning("skipped: %s", err)
        if isinstance(err, AlreadyDone):
            write_outcome(cfg, "SKIPPED", reason=str(err), run_id=err.run_id)
            return True, objective(cfg, err.run_id)
        write_outcome(cfg, "SKIPPED", reason=str(err))
    except LossbenchError as err:
        log.error("failed: %s", err)
        write_outcome(cfg, "FAILED", reason=str(err))
    except Exception as err:
        log.exception("failed: %s", err)
        write_outcome(cfg, "FAILED", reason=f"{type(err).__name__}: {err}")
    return True, None


def _over_seeds(cfg: DictConfig) -> float | None:
    """One run per seed of ``tune.seeds`` (each in ``<output_dir>/seed<s>``); the mean of their
    ``optimized_metric`` (a finished config's stored run counts), None if one failed or the
    pair is refused. The job's outcome lists every run."""
    values, run_ids = [], []
    sweep = current_sweep() is not None
    for seed in cfg.tune.seeds:
        one = cfg.copy()
        with open_dict(one):
            one.seed, one.tune.seeds = seed, None
            one.output_dir = str(Path(cfg.output_dir) / f"seed{seed}")
        try:
            run_id = train(one)
        except AlreadyDone as err:
            run_id = err.run_id
        except InvalidPair as err:
            if not sweep:
                raise
            log.warning("skipped: %s", err)
            write_outcome(cfg, "SKIPPED", reason=str(err))
            return None
        except Exception as err:
            if not sweep:
                raise
            log.exception("failed: %s", err)
            reason = str(err) if isinstance(err, LossbenchError) else f"{type(err).__name__}: {err}"
            write_outcome(cfg, "FAILED", reason=f"seed {seed}: {reason}")
            return None
        values.append(float(objective(one, run_id)))
        run_ids.append(run_id)
    if sweep:
        write_outcome(cfg, "FINISHED", run_id=",".join(run_ids))
    return sum(values) / len(values)


def write_outcome(cfg: DictConfig, status: str, **fields: str) -> None:
    """Write the job's ``outcome.json`` (status, reason or run id, its overrides)."""
    # unresolved: an override may hold an interpolation, e.g. optimizer.lr='${tuned_lr...}'
    overrides = OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)
    record = {"status": status, "overrides": overrides, **fields}
    (Path(cfg.output_dir) / OUTCOME).write_text(json.dumps(record))
