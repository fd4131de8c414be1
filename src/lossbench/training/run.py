"""One run from a resolved Hydra config: check → build → open the run → fit → test → record.

Everything that can be refused is checked, and everything that can fail to build is built,
before the MLflow run opens: a refused or broken config leaves nothing in the store.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, EarlyStopping, LearningRateMonitor
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lossbench import matrix, schemas
from lossbench.data import DATASETS, ClassificationData, make_datamodule
from lossbench.data.augment import make_augment
from lossbench.errors import AlreadyDone, InvalidPair, LossbenchError, RunStopped
from lossbench.heads import make_head
from lossbench.losses import make_criterion
from lossbench.models import make_model
from lossbench.tracking import mlflow_run, store
from lossbench.training import checks
from lossbench.training.checkpoint import Checkpoint
from lossbench.training.module import Classifier
from lossbench.training.progress import progress_callbacks
from lossbench.training.schedulers import SCHEDULERS

log = logging.getLogger("lossbench")
SLURM_LAUNCHERS = ("slurm", "submitit_slurm")  # hydra/launcher choices that submit to Slurm
_SLURM_WARNING: dict[str, str] = {}  # "signal": the name of the warning that stopped the fit

warnings.filterwarnings("ignore", ".*does not have many workers.*")  # in-memory data: none needed
warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
# train/loss_epoch is logged whatever the interval: Lightning's hint about it does not apply
warnings.filterwarnings("ignore", ".*is smaller than the logging interval.*")
# On a machine with Slurm installed, Lightning warns in every run outside a Slurm job that srun
# "is available but not used": runs there are legitimate (a sweep's own process, a local run)
warnings.filterwarnings("ignore", "The `srun` command is available on your system but is not used")


class _NoTips(logging.Filter):
    """Drops Lightning's product tips ("💡 Tip: ... try installing litlogger"): framework
    advertising, not something a lossbench user can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip")


logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_NoTips())


def _name_and_params(node: DictConfig) -> tuple[str, dict[str, Any]]:
    params = OmegaConf.to_container(node, resolve=True)
    return params.pop("name"), params


def make_data(cfg: DictConfig) -> ClassificationData:
    """The run's data module, its stress conditions set; nothing loaded yet."""
    dataset, params = _name_and_params(cfg.dataset)
    noise, imbalance = (OmegaConf.to_object(cfg.dataset[k]) for k in ("noise", "imbalance"))
    params = {k: v for k, v in params.items() if k not in ("noise", "imbalance")}
    data = make_datamodule(dataset, Path(cfg.data_dir).resolve(), cfg.seed, **params)
    data.set_stress(noise, imbalance, dataset)
    return data


def current_sweep() -> str | None:
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return mlflow_run.sweep_id(HydraConfig.get().sweep.dir)
    return None


@dataclass
class Job:
    """A run built and ready to open: what :func:`_fit` needs."""

    cfg: DictConfig
    resolved: dict[str, Any]
    resume: str | None
    data: ClassificationData
    module: Classifier
    checkpoint: Checkpoint
    trainer: pl.Trainer
    logger: mlflow_run.BatchedMLFlowLogger
    name: str
    predictor: dict[str, Any]  # for lossbench.predict, without the run's results
    clock: dict[str, float]
    rng_state: torch.Tensor  # the CPU RNG once built: what dropout draws from in training


def train(cfg: DictConfig, callbacks: Sequence[Callback] = ()) -> str:
    """Train and test one configuration; return its MLflow run id.

    ``callbacks`` are added to the Trainer's (the benchmark times training with one). An error
    before the run opens is a :class:`LossbenchError` (one message, exit code 2).
    """
    return _fit(build(cfg, callbacks))


def build(cfg: DictConfig, callbacks: Sequence[Callback] = (), resolve: bool = False) -> Job:
    """Check and build one configuration without opening its run (the fused launcher trains
    the jobs it builds side by side; ``resolve``: first resolve the config in place, as it does
    while the job's HydraConfig is set). Any error is a :class:`LossbenchError`."""
    try:
        return _build(cfg, callbacks, resolve)
    except LossbenchError:
        raise
    except Exception as err:
        raise LossbenchError(
            f"the run could not be set up: {type(err).__name__}: {err}. Fix: correct the "
            "config value or file it names (HYDRA_FULL_ERROR=1 shows the traceback)"
        ) from err


def check_pair(cfg: DictConfig) -> str:
    """The run's task; :class:`InvalidPair` (a job a sweep skips) where its head and loss make
    no sense on its dataset (``lossbench.matrix``), or where ``lossbench.studies.tune``'s
    comparison (heads x losses) has no tuned lr for them (``tuned_lr.<head>.<loss>: null``)."""
    dataset, data_params = _name_and_params(cfg.dataset)
    head, loss = cfg.head.name, cfg.loss.name
    task = DATASETS[dataset].task_of(data_params)
    matrix.check(task, head, loss)
    if (
        cfg.get("tuned_lr") is not None
        and OmegaConf.select(cfg, f"tuned_lr.{head}.{loss}", default="absent") is None
    ):
        raise InvalidPair(f"head={head} loss={loss} was not tuned: lossbench.studies.tune "
                          "compares the pairs it tuned (--pairs)")  # fmt: skip
    return task


def _build(cfg: DictConfig, callbacks: Sequence[Callback], resolve: bool = False) -> Job:
    """Check the config, the store, the data; build the model, optimizer and Trainer."""
    schemas.check_keys(cfg)
    dataset = cfg.dataset.name
    head_name, head_params = _name_and_params(cfg.head)
    loss_name, loss_params = _name_and_params(cfg.loss)
    model_name, model_params = _name_and_params(cfg.model)
    task = check_pair(cfg)
    if resolve:
        OmegaConf.resolve(cfg)
    checks.run_keys(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    chash = mlflow_run.config_hash(resolved)
    uri = cfg.logger.tracking_uri
    store.check_store(uri)
    if (existing := store.existing_store(uri)) is not None:
        store.close_stale(existing)  # this host's runs whose process died: KILLED
    resume = None
    if cfg.resume:
        resume = mlflow_run.resumable(uri, cfg.resume, chash, cfg.output_roots)
    if current_sweep() is not None and not cfg.rerun and resume is None:
        done = mlflow_run.finished_run(uri, cfg.logger.experiment_name, chash)
        if done is not None:
            raise AlreadyDone(done)

    clock = {"start": time.perf_counter()}
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    head = make_head(head_name, **head_params)
    data = make_data(cfg)
    data.prepare_data()
    data.setup("fit")
    clock["data"] = time.perf_counter()
    counts = data.class_counts()
    one_logit = head.one_logit(task, data.num_classes)  # a two-class set's sigmoid head
    criterion = make_criterion(head, loss_name, counts, task, one_logit, **loss_params)
    augment, augment_params = _name_and_params(cfg.augment)
    data.augment = make_augment(augment, data.input_shape, **augment_params)
    model = make_model(model_name, data.input_shape, data.num_classes, one_logit, **model_params)
    if getattr(model, "input_mean", None) is not None:  # pretrained weights: their statistics
        data.mean, data.std = model.input_mean, model.input_std
    checks.forward_pass(model, data.input_shape, data.num_classes, model_name)
    optimizer = checks.optimizer_factory(cfg.optimizer, model)
    scheduler_name, scheduler_params = _name_and_params(cfg.scheduler)
    scheduler = partial(SCHEDULERS[scheduler_name], **scheduler_params)
    checks.schedule(scheduler, optimizer, model, cfg.trainer.max_epochs or 1)
    if cfg.compile:
        model = torch.compile(model)
    module = Classifier(model, head, criterion, task, data.num_classes, optimizer, scheduler)
    progress, show_bar = progress_callbacks(cfg.progress_bar)
    if scheduler_name != "none":
        progress.append(LearningRateMonitor(logging_interval="step"))
    output_dir = Path(cfg.output_dir).resolve()
    checkpoint = Checkpoint(dirpath=output_dir / "checkpoints", **cfg.checkpoint)
    if (stop := cfg.early_stopping).patience is not None:
        callbacks = [*callbacks, EarlyStopping(stop.monitor, stop.min_delta, stop.patience,
                                               mode=stop.mode)]  # fmt: skip

    tags = {"dataset": dataset, "head": head_name, "loss": loss_name, "seed": cfg.seed}
    tags |= {"model": model_name, "task": task, "config_hash": chash, **data.split_tags()}
    tags |= {**store.process_tags(), store.OUTPUT_TAG: str(output_dir)}
    if (sweep := current_sweep()) is not None:
        tags["sweep_id"] = sweep
    name = mlflow_run.run_name(dataset, head_name, loss_name, cfg.seed)
    try:  # bad Trainer arguments fail here; the logger (which opens the store) comes after
        trainer: pl.Trainer = instantiate(
            cfg.trainer,
            logger=False,
            callbacks=[*progress, checkpoint, *callbacks],
            enable_progress_bar=show_bar,
        )
    except Exception as err:
        cause = err.__cause__ or err
        raise LossbenchError(
            f"Lightning's Trainer refused the trainer config: {cause}. "
            "Fix the trainer.* value it names (see pytorch_lightning.Trainer's arguments)"
        ) from None
    lg = cfg.logger
    store.prepare_store(uri, lg.experiment_name, lg.artifact_location)  # once, under a lock
    logger = mlflow_run.make_logger(uri, lg.experiment_name, name, tags, lg.artifact_location,
                                  cfg.resume)  # fmt: skip
    trainer.logger = logger  # the run opens on the logger's first use, in _fit
    model_params = {**model_params, **_rebuild(model)}
    predictor = {"task": task, "classes": data.class_names, "input_shape": data.input_shape,
                 "dataset": dataset, "model": {"name": model_name, "params": model_params},
                 "head": {"name": head_name, **head_params}, "one_logit": one_logit}  # fmt: skip
    return Job(cfg, resolved, resume, data, module, checkpoint, trainer, logger, name, predictor,
               clock, torch.get_rng_state())  # fmt: skip


def _fit(job: Job) -> str:
    """Open the run, fit, test with the best weights, record; end the run with its status."""
    cfg, trainer, module, data, checkpoint, logger = (
        job.cfg, job.trainer, job.module, job.data, job.checkpoint, job.logger)  # fmt: skip
    clock = job.clock
    log.info("run %s (%s) → %s", job.name, logger.run_id, logger.experiment.tracking_uri)
    status, stopped, reason, command = "FAILED", None, "", None
    try:
        open_run(job)
        clock["fit_start"] = time.perf_counter()
        with _slurm_warnings_stop_fit():
            trainer.fit(module, datamodule=data, ckpt_path=job.resume, weights_only=True)
        clock["fit"] = time.perf_counter()
        if (stop := trainer.early_stopping_callback) is not None and stop.stopped_epoch:
            log.info("run %s: early stopping after epoch %d", job.name, trainer.current_epoch)
        tested = (checkpoint.best_model_path or None) if cfg.test_on == "best" else None  # last
        trainer.test(module, datamodule=data, ckpt_path=tested, verbose=False, weights_only=True)
        clock["test"] = time.perf_counter()
        if trainer.is_global_zero:  # under DDP, rank zero alone records
            score = checkpoint.best_model_score
            record(job, None if score is None else float(score), trainer.global_step)
        status = "FINISHED"
    except (KeyboardInterrupt, SystemExit) as err:  # Lightning turns Ctrl-C into sys.exit(1)
        status, stopped = "KILLED", err
        last = Path(checkpoint.dirpath) / "last.ckpt"
        try:
            trainer.save_checkpoint(last, weights_only=False)  # resume=<run id> continues here
        except Exception:  # interrupted before training began: nothing to resume
            last = None
        command = resume_command(logger.run_id) if last else None
        reason = f"stopped by {_signal_name(err)}" + (f"; resume: {command}" if command else "")
        mlflow_run.record_failure(logger, err, status, checkpoint=last and str(last), reason=reason)
    except BaseException as err:
        mlflow_run.record_failure(logger, err, status)
        raise
    finally:
        mlflow_run.end_run(logger, status)
    if stopped is not None:
        print(f"\nlossbench: run {logger.run_id} was {reason.split(';')[0]} and is KILLED.",
              file=sys.stderr)  # fmt: skip
        if command:
            print(f"Continue it with:\n  {command}", file=sys.stderr)
        # Lightning's SIGTERMException carries no exit code (0): exit as a SIGTERM'd process
        code = stopped.code if isinstance(stopped, SystemExit) and stopped.code else None
        raise RunStopped(code or 128 + signal.SIGTERM, logger.run_id, reason) from stopped
    return logger.run_id


def open_run(job: Job) -> None:
    """Open the job's MLflow run with its params (and the stress applied to its data), or
    reopen the KILLED run it resumes."""
    if job.resume is None:  # a resumed run has its params (MLflow refuses to change them)
        params = {**job.resolved, "data_source": job.data.origin}  # where the data came from
        mlflow_run.log_config(job.logger, params, OmegaConf.to_yaml(job.cfg, resolve=True))
        if job.data.stressed is not None:
            mlflow_run.log_stress(job.logger, job.data.stressed)
    else:
        mlflow_run.reopen(job.logger)


def record(job: Job, best_score: float | None, step: int) -> None:
    """What a tested run records besides its metrics: thresholds, confusion matrix,
    reliability bins, ``<monitor>_best``, weights and predictor, loss curves, timings."""
    module, logger, checkpoint = job.module, job.logger, job.checkpoint
    if module.thresholds is not None:  # head.threshold=tuned: of the tested weights
        mlflow_run.log_thresholds(logger, module.thresholds.tolist())
    if module.test_confusion is not None:
        mlflow_run.log_confusion(logger, module.test_confusion.tolist(), job.data.class_names)
    if module.test_reliability is not None:
        logger.experiment.log_dict(logger.run_id, module.test_reliability, mlflow_run.RELIABILITY)
    if best_score is not None:
        logger.log_metrics({f"{checkpoint.monitor}_best": best_score}, step=step)
    if job.cfg.save_weights:
        thresholds = None if module.thresholds is None else module.thresholds.tolist()
        spec = {**job.predictor, "thresholds": thresholds,
                "preprocessing": job.data.preprocessing()}  # fmt: skip
        mlflow_run.log_predictor(logger, module.model, spec, Path(checkpoint.dirpath))
    mlflow_run.log_loss_curves(logger, job.name)
    mlflow_run.log_timings(logger, job.clock)


def _rebuild(model: torch.nn.Module) -> dict[str, Any]:
    """Model parameters that rebuild this model for inference without downloading anything:
    pretrained weights are in the run's own weights, and the input size they set stays."""
    if getattr(model, "input_mean", None) is None:
        return {}
    return {"weights": None, "input_size": model.input_size}


@contextmanager
def _slurm_warnings_stop_fit() -> Iterator[None]:
    """In a Slurm job, the signals by which Slurm warns that the job is about to end
    (``sbatch --signal``) stop the fit as SIGTERM does: the run ends KILLED with a checkpoint,
    resumable. SIGUSR2 in a submitit job (``hydra/launcher=slurm``: sent
    ``hydra.launcher.signal_delay_s`` before the time limit; submitit's handler would raise
    inside the training step, or requeue the job to start the run anew), SIGUSR1 in any
    (Lightning's auto-requeue would mark the MLflow run FINISHED and requeue the job)."""
    signals = [signal.SIGUSR1] if os.environ.get("SLURM_JOB_ID") else []
    if "SUBMITIT_FOLDER" in os.environ:  # set by submitit in its job process
        signals.append(signal.SIGUSR2)
    if not signals or threading.current_thread() is not threading.main_thread():
        yield
        return

    def warned(signum: int, frame: object) -> None:
        _SLURM_WARNING["signal"] = signal.Signals(signum).name
        log.warning("%s: Slurm's warning that the job ends soon; the run stops as on SIGTERM",
                    _SLURM_WARNING["signal"])  # fmt: skip
        signal.raise_signal(signal.SIGTERM)  # Lightning's handler: stop after this step

    _SLURM_WARNING.clear()
    previous = {s: signal.signal(s, warned) for s in signals}  # before Lightning's, so its
    try:  # auto-requeue handler (SIGUSR1) is not installed
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _signal_name(err: BaseException) -> str:
    """Which signal stopped the run: Lightning raises SIGTERMException for SIGTERM (also the
    one a Slurm warning signal turns into), and turns the KeyboardInterrupt of SIGINT into
    ``sys.exit(1)``."""
    if isinstance(err, SIGTERMException):
        if warning := _SLURM_WARNING.get("signal"):
            return f"{warning} (Slurm's warning: the job's time limit is near)"
        return "SIGTERM"
    if isinstance(err, KeyboardInterrupt) or isinstance(err.__context__, KeyboardInterrupt):
        return "SIGINT (Ctrl-C)"
    return f"SystemExit({getattr(err, 'code', '')})"


def resume_command(run_id: str) -> str:
    """The command that continues run ``run_id``: this job's overrides plus ``resume=``. A job
    of a local sweep continues as a single run (``hydra.mode=RUN``); a Slurm job as a sweep of
    one job through the same launcher (``-m``, its ``hydra/launcher`` and ``hydra.launcher.*``
    overrides)."""
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    overrides = [o for o in (hydra.overrides.task if hydra else []) if not o.startswith("resume=")]
    command = ["python", "train.py"]
    if hydra is not None and hydra.mode == RunMode.MULTIRUN:
        if hydra.runtime.choices.get("hydra/launcher") in SLURM_LAUNCHERS:
            command.append("-m")
            overrides += [o for o in hydra.overrides.hydra
                          if o.startswith(("hydra/launcher=", "hydra.launcher."))]  # fmt: skip
        else:
            overrides.append("hydra.mode=RUN")
    return shlex.join([*command, *overrides, f"resume={run_id}"])
