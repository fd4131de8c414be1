"""One run from a resolved Hydra config: validate → build → fit → test → record."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback

from lossbench import matrix, tracking
from lossbench.checkpoint import Checkpoint
from lossbench.data import DATASETS, make_datamodule
from lossbench.errors import AlreadyDone, InvalidPair, LossbenchError
from lossbench.heads import make_head
from lossbench.losses import make_criterion
from lossbench.models import make_model
from lossbench.module import Classifier
from lossbench.progress import progress_callbacks
from lossbench.summary import OUTCOME, print_run

log = logging.getLogger("lossbench")

warnings.filterwarnings("ignore", ".*does not have many workers.*")  # in-memory data: none needed
warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def _name_and_params(node: DictConfig) -> tuple[str, dict[str, Any]]:
    params = OmegaConf.to_container(node, resolve=True)
    return params.pop("name"), params


def _sweep_id() -> str | None:
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return tracking.sweep_id(HydraConfig.get().sweep.dir)
    return None


def train(cfg: DictConfig, callbacks: Sequence[Callback] = ()) -> str:
    """Train and test one configuration; return its MLflow run id.

    ``callbacks`` are added to the Trainer's (the benchmark times training with one).

    Everything that can be refused (names, the head/loss pair, missing data) is checked before
    the MLflow run is opened, so a refused config leaves nothing in the store.
    """
    dataset, data_params = _name_and_params(cfg.dataset)
    head_name, head_params = _name_and_params(cfg.head)
    loss_name, loss_params = _name_and_params(cfg.loss)
    model_name, model_params = _name_and_params(cfg.model)
    task = DATASETS[dataset].task
    matrix.check(task, head_name, loss_name)
    _check_optimized_metric(cfg.optimized_metric, cfg.checkpoint.monitor)
    lr = cfg.optimizer.get("lr")
    if lr is not None and not lr > 0:
        raise LossbenchError(f"optimizer.lr={lr} must be positive; set e.g. `optimizer.lr=0.001`")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    chash = tracking.config_hash(resolved)
    resume = tracking.resumable(cfg.logger.tracking_uri, cfg.resume, chash) if cfg.resume else None
    tracking.check_store(cfg.logger.tracking_uri)
    if _sweep_id() is not None and not cfg.rerun and resume is None:
        done = tracking.finished_run(cfg.logger.tracking_uri, cfg.logger.experiment_name, chash)
        if done is not None:
            raise AlreadyDone(done)

    clock = {"start": time.perf_counter()}
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    head = make_head(head_name, **head_params)
    criterion = make_criterion(head, loss_name, **loss_params)
    data = make_datamodule(dataset, Path(cfg.data_dir).resolve(), cfg.seed, **data_params)
    data.prepare_data()
    data.setup("fit")
    clock["data"] = time.perf_counter()
    model = make_model(model_name, data.input_shape, data.num_classes, **model_params)
    if cfg.compile:
        model = torch.compile(model)
    module = Classifier(model, head, criterion, task, data.num_classes, instantiate(cfg.optimizer))
    progress, show_bar = progress_callbacks(cfg.progress_bar)
    checkpoint = Checkpoint(
        dirpath=Path(cfg.output_dir).resolve() / "checkpoints", **cfg.checkpoint
    )

    tags = {"dataset": dataset, "head": head_name, "loss": loss_name, "seed": cfg.seed}
    tags |= {"model": model_name, "task": task, "config_hash": chash}
    if (sweep := _sweep_id()) is not None:
        tags["sweep_id"] = sweep
    name = tracking.run_name(dataset, head_name, loss_name, cfg.seed)
    lg = cfg.logger
    logger = tracking.make_logger(
        lg.tracking_uri, lg.experiment_name, name, tags, lg.artifact_location, cfg.resume
    )
    try:  # bad Trainer arguments fail here, before the run opens
        trainer: pl.Trainer = instantiate(
            cfg.trainer,
            logger=logger,
            callbacks=[*progress, checkpoint, *callbacks],
            enable_progress_bar=show_bar,
        )
    except Exception as err:
        cause = err.__cause__ or err
        raise LossbenchError(
            f"Lightning's Trainer refused the trainer config: {cause}. "
            "Fix the trainer.* value it names (see pytorch_lightning.Trainer's arguments)"
        ) from None
    log.info("run %s (%s) → %s", name, logger.run_id, logger.experiment.tracking_uri)
    status = "FAILED"
    try:
        if resume is None:  # a resumed run has its params (MLflow refuses to change them)
            tracking.log_config(logger, resolved, OmegaConf.to_yaml(cfg, resolve=True))
        else:
            tracking.reopen(logger)
        clock["fit_start"] = time.perf_counter()
        trainer.fit(module, datamodule=data, ckpt_path=resume)
        clock["fit"] = time.perf_counter()
        trainer.test(
            module, datamodule=data, ckpt_path=checkpoint.best_model_path or None, verbose=False
        )
        clock["test"] = time.perf_counter()
        if trainer.is_global_zero:  # under DDP, rank zero alone records
            if module.thresholds is not None:  # head.threshold=tuned: of the tested weights
                tracking.log_thresholds(logger, module.thresholds.tolist())
            if module.test_confusion is not None:
                tracking.log_confusion(logger, module.test_confusion.tolist(), data.class_names)
            if checkpoint.best_model_score is not None:
                best = {f"{checkpoint.monitor}_best": float(checkpoint.best_model_score)}
                logger.log_metrics(best, step=trainer.global_step)
            tracking.log_loss_curves(logger)
            tracking.log_timings(logger, clock)
        status = "FINISHED"
    except (KeyboardInterrupt, SystemExit) as err:  # Lightning turns Ctrl-C into sys.exit(1)
        status = "KILLED"
        last = Path(checkpoint.dirpath) / "last.ckpt"
        try:
            trainer.save_checkpoint(last)  # resume=<run id> continues from here
        except Exception:  # interrupted before training began: nothing to resume
            last = None
        tracking.record_failure(logger, err, status, checkpoint=last and str(last))
        # Lightning's SIGTERMException carries no exit code (0): exit as a SIGTERM'd process
        code = err.code if isinstance(err, SystemExit) and err.code else 128 + signal.SIGTERM
        raise SystemExit(code) from err
    except BaseException as err:
        tracking.record_failure(logger, err, status)
        raise
    finally:
        tracking.end_run(logger, status)
    return logger.run_id


def _check_optimized_metric(name: str | None, monitor: str) -> None:
    if name and name.endswith("_best") and name != f"{monitor}_best":
        metric = name.removesuffix("_best")
        raise LossbenchError(
            f"optimized_metric={name} is the best value of the checkpoint's monitored metric, "
            f"which is checkpoint.monitor={monitor}, not {metric}; set "
            f"`checkpoint.monitor={metric}` (and checkpoint.mode=max for a score, min for a "
            f"loss), or optimized_metric={monitor}_best"
        )


def objective(cfg: DictConfig, run_id: str) -> float | str:
    """What the task function returns for a finished run: the value of ``optimized_metric``
    in MLflow (its last logged value), or the run id when no metric is optimised."""
    if not cfg.optimized_metric:
        return run_id
    client = MlflowClient(tracking.resolve_tracking_uri(cfg.logger.tracking_uri))
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

    A single run: a refused config exits 2 with one message; a failed run exits non-zero.
    In a sweep, no job stops the others: a refused pair or an already finished config is
    skipped (an already finished one still returns its ``optimized_metric``), a failure is
    recorded (the MLflow run ends FAILED with its reason) and returns None, and each job
    leaves ``outcome.json`` in its output dir for the sweep's closing summary.
    """
    sweep = _sweep_id() is not None
    try:
        run_id = train(cfg)
    except (InvalidPair, AlreadyDone) as err:
        if not sweep:
            _fail(err)
        log.warning("skipped: %s", err)
        if isinstance(err, AlreadyDone):
            _outcome(cfg, "SKIPPED", reason=str(err), run_id=err.run_id)
            return objective(cfg, err.run_id)
        _outcome(cfg, "SKIPPED", reason=str(err))
        return None
    except LossbenchError as err:
        if not sweep:
            _fail(err)
        log.error("failed: %s", err)
        _outcome(cfg, "FAILED", reason=str(err))
        return None
    except Exception as err:
        if not sweep:
            raise
        log.exception("failed: %s", err)
        _outcome(cfg, "FAILED", reason=f"{type(err).__name__}: {err}")
        return None
    if run_id is None:  # the other ranks of a DDP run
        return None
    if not sweep:
        print_run(cfg.logger.tracking_uri, run_id)
    else:
        _outcome(cfg, "FINISHED", run_id=run_id)
    return objective(cfg, run_id)


def _outcome(cfg: DictConfig, status: str, **fields: str) -> None:
    """Write the job's ``outcome.json`` (status, reason or run id, its overrides)."""
    # unresolved: an override may hold an interpolation, e.g. optimizer.lr='${tuned_lr...}'
    overrides = OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)
    record = {"status": status, "overrides": overrides, **fields}
    (Path(cfg.output_dir) / OUTCOME).write_text(json.dumps(record))


def _fail(err: LossbenchError) -> None:
    print(f"lossbench: error: {err}", file=sys.stderr)
    sys.exit(err.exit_code)
