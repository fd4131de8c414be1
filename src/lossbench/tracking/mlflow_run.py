"""The MLflow side of a run: store URI, run name and tags, params, artifacts, final status."""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning_utilities.core.rank_zero import rank_zero_only
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pytorch_lightning.loggers import MLFlowLogger
from torch import nn

from lossbench.errors import LossbenchError, NonFiniteLoss
from lossbench.tracking.store import (
    SLURM_TAGS,
    default_artifact_location,
    existing_store,
    open_store,
    process_tags,
    resolve_tracking_uri,
    retry_if_locked,
)

LOSS_CURVES = "loss_curves.png"
CONFIG_ARTIFACT = "config.yaml"
THRESHOLDS = "thresholds.json"
CONFUSION = "confusion_matrix.json"
RELIABILITY = "reliability.json"  # the test split's reliability-diagram bins
COUNTS = "class_counts.json"  # the training split's class counts, under noise or imbalance
PREDICTOR = "predictor.json"  # what lossbench.predict needs besides the weights
WEIGHTS = "weights.pt"  # the tested weights (the model's state_dict)
GROUP_SIZE_TAG = "fused_group_size"  # runs trained in one fused loop: a member's share of its wall


def run_name(dataset: str, head: str, loss: str, seed: int) -> str:
    return f"{dataset}-{head}-{loss}-seed{seed}"


def sweep_id(sweep_dir: str | Path) -> str:
    """A short stable id for a Hydra multirun: a hash of its absolute sweep directory."""
    return hashlib.sha1(str(Path(sweep_dir).resolve()).encode()).hexdigest()[:10]


class BatchedMLFlowLogger(MLFlowLogger):
    """Lightning's ``MLFlowLogger``, writing metrics in batches rather than one store
    transaction per logging step: a SQLite commit every ``log_every_n_steps`` cost ~20% of a
    small model's CPU step time (``make bench``). Pending metrics are written every
    ``flush_every_s`` seconds, by :meth:`flush`, and when Lightning finalizes the logger.
    (MLflow's own ``synchronous=False`` queue waits up to 1 s per flush, and deadlocked here
    with buffering on.)
    """

    def __init__(self, *args: Any, flush_every_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flush_every_s = flush_every_s
        self._pending: list[Metric] = []
        self._last_write = time.monotonic()

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        if time.monotonic() - self._last_write >= self.flush_every_s:
            self.flush()

    @rank_zero_only
    def flush(self) -> None:
        """Write the pending metrics (MLflow takes at most 1000 per batch)."""
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), 1000):
            chunk = pending[i : i + 1000]
            retry_if_locked(
                lambda chunk=chunk: self.experiment.log_batch(self.run_id, metrics=chunk)
            )
        self._last_write = time.monotonic()

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self.flush()
        super().finalize(status)


# Keys that say where or how a run is stored or shown, not what it computes: left out of its
# config hash (dotted paths).
NOT_HASHED = (
    "root_dir", "data_dir", "output_dir", "output_roots", "progress_bar", "rerun", "resume",
    "logger", "optimized_metric", "tuned_lr", "save_weights", "tune",
    "trainer.default_root_dir", "trainer.enable_model_summary",
)  # fmt: skip


def config_hash(config: Mapping[str, Any]) -> str:
    """A stable hash of the resolved config's content (``NOT_HASHED`` keys left out, and
    ``early_stopping`` while it is off: configs hashed before it existed keep their hash)."""
    content = json.loads(json.dumps(config, default=str))
    if (content.get("early_stopping") or {}).get("patience") is None:
        content.pop("early_stopping", None)  # off: the runs of before it existed
    for path in NOT_HASHED:
        *parents, key = path.split(".")
        node = content
        for part in parents:
            node = node.get(part, {})
        node.pop(key, None)
    return hashlib.sha1(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def finished_run(tracking_uri: str, experiment_name: str, chash: str) -> str | None:
    """The id of a FINISHED run with this config hash in the experiment, if any."""
    client = existing_store(tracking_uri)
    exp = client and client.get_experiment_by_name(experiment_name)
    if exp is None:
        return None
    query = f"tags.config_hash = '{chash}' and attributes.status = 'FINISHED'"
    runs = client.search_runs([exp.experiment_id], query, max_results=1)
    return runs[0].info.run_id if runs else None


def make_logger(
    tracking_uri: str,
    experiment_name: str,
    name: str,
    tags: Mapping[str, Any],
    artifact_location: str | None = None,
    run_id: str | None = None,
) -> BatchedMLFlowLogger:
    """The MLflow logger for one run; the run opens on first use of ``run_id``; with a
    ``run_id``, that existing run is continued."""
    uri = resolve_tracking_uri(tracking_uri)
    return BatchedMLFlowLogger(
        experiment_name=experiment_name,
        run_name=name,
        tracking_uri=uri,
        tags={k: str(v) for k, v in tags.items()},
        artifact_location=artifact_location or default_artifact_location(uri),
        run_id=run_id,
    )


def log_config(logger: MLFlowLogger, params: Mapping[str, Any], yaml_text: str) -> None:
    """The resolved config as params (flattened with ``/``) and as ``config.yaml``."""
    logger.log_hyperparams(dict(params))
    logger.experiment.log_text(logger.run_id, yaml_text, CONFIG_ARTIFACT)


def log_stress(logger: BatchedMLFlowLogger, stressed: Any) -> None:
    """What label noise and imbalance did to the training split: the metrics
    ``data/flipped_fraction`` and ``data/imbalance_actual``, and the training split's class
    counts (true labels, before noise) as ``class_counts.json`` (multi-class), when either is
    set."""
    metrics = {"data/flipped_fraction": stressed.flipped_fraction,
               "data/imbalance_actual": stressed.imbalance_actual}  # fmt: skip
    metrics = {k: v for k, v in metrics.items() if v is not None}
    if not metrics:
        return
    logger.log_metrics(metrics, step=0)
    if stressed.class_counts:
        logger.experiment.log_dict(logger.run_id, {"train": stressed.class_counts}, COUNTS)


def log_thresholds(logger: MLFlowLogger, thresholds: list[float]) -> None:
    """Per-class decision thresholds tuned on the validation split, as ``thresholds.json``."""
    logger.experiment.log_dict(logger.run_id, {"thresholds": thresholds}, THRESHOLDS)


def log_confusion(logger: MLFlowLogger, matrix: list[list[int]], labels: list[str]) -> None:
    """The test split's confusion matrix (rows: true class, columns: predicted), as
    ``confusion_matrix.json``."""
    logger.experiment.log_dict(logger.run_id, {"labels": labels, "matrix": matrix}, CONFUSION)


def log_predictor(
    logger: MLFlowLogger, model: nn.Module, spec: Mapping[str, Any], folder: Path
) -> None:
    """The tested weights as ``weights.pt`` and, as ``predictor.json``, ``spec``: the task,
    class names, input shape, model, head, thresholds and preprocessing that
    ``lossbench.predict`` rebuilds the classifier from."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(getattr(model, "_orig_mod", model).state_dict(), folder / WEIGHTS)  # compiled
    logger.experiment.log_artifact(logger.run_id, str(folder / WEIGHTS))
    logger.experiment.log_dict(logger.run_id, dict(spec), PREDICTOR)


def log_loss_curves(logger: BatchedMLFlowLogger, title: str) -> None:
    """Plot the recorded train/val loss histories (read back from the store) as a PNG."""
    from matplotlib.figure import Figure  # at the run's end: not on the way to training

    logger.flush()
    client: MlflowClient = logger.experiment
    fig = Figure(figsize=(7, 4))  # fixed margins: the layout engines cost 40 ms a run
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.12, top=0.92)
    ax = fig.add_subplot()
    styles = {
        "train/loss": dict(lw=0.8, alpha=0.5),
        "train/loss_epoch": dict(marker="o"),
        "val/loss": dict(marker="s"),
    }
    for key, style in styles.items():
        history = sorted(client.get_metric_history(logger.run_id, key), key=lambda m: m.step)
        if history:
            ax.plot([m.step for m in history], [m.value for m in history], label=key, **style)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    client.log_figure(logger.run_id, fig, LOSS_CURVES)


def log_timings(logger: BatchedMLFlowLogger, clock: dict[str, float]) -> None:
    """Seconds spent in one run, as metrics ``time/*``: ``data`` (load, split), ``setup``
    (model, Trainer, MLflow run and params), ``fit``, ``test``, ``record`` (artifacts, up to
    now) and ``total``. Process start-up (imports) is outside: a sweep pays it once."""
    now = time.perf_counter()
    seconds = {
        "data": clock["data"] - clock["start"],
        "setup": clock["fit_start"] - clock["data"],
        "fit": clock["fit"] - clock["fit_start"],
        "test": clock["test"] - clock["fit"],
        "record": now - clock["test"],
        "total": now - clock["start"],
    }
    logger.log_metrics({f"time/{k}_s": v for k, v in seconds.items()})


def resumable(tracking_uri: str, run_id: str, chash: str, roots: Sequence[str]) -> str:
    """The checkpoint to continue run ``run_id`` from. Refused, leaving the run as it is: a run
    that is not KILLED (a FINISHED one must not be trained again; a RUNNING one may be alive:
    ``python -m lossbench.tracking.runs close-stale`` closes dead ones), a run without a
    checkpoint, a checkpoint outside the output folders ``roots`` (a store's tag must not make
    lossbench load any file), and a run of another config."""
    client = open_store(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise LossbenchError(
            f"resume={run_id}: no such run in {tracking_uri}; give the id of a KILLED run"
        ) from None
    status, tags = run.info.status, run.data.tags
    if status != "KILLED":
        hint = {
            "FINISHED": "it is complete; train the config anew without resume=",
            "RUNNING": "if its process died, `python -m lossbench.tracking.runs close-stale` "
            "marks it KILLED first",
            "FAILED": "a failed run is not continued; fix its failure and train it anew",
        }.get(status, "")
        raise LossbenchError(
            f"resume={run_id}: the run is {status}; only a KILLED run (stopped by Ctrl-C, "
            f"SIGTERM or a crash) can be resumed. Fix: {hint}"
        )
    checkpoint = tags.get("checkpoint")
    if not checkpoint or not Path(checkpoint).is_file():
        raise LossbenchError(
            f"resume={run_id}: the run has no saved checkpoint (tag 'checkpoint'); only a run "
            "stopped after its first epoch or by Ctrl-C or SIGTERM can be resumed"
        )
    path = Path(checkpoint).resolve()
    if not any(path.is_relative_to(Path(r).resolve()) for r in roots):
        raise LossbenchError(
            f"resume={run_id}: its checkpoint {path} lies outside the output folders "
            f"({', '.join(map(str, roots))}), so it is not loaded. Fix: if you trust that file, "
            f"add its folder to output_roots, e.g. `output_roots=[{path.parent}]`"
        )
    if tags.get("config_hash") != chash:
        raise LossbenchError(
            f"resume={run_id}: that run was trained with another config; repeat its overrides "
            "(see its config.yaml artifact) with resume=<run id>"
        )
    return str(path)


def reopen(logger: MLFlowLogger) -> None:
    """Mark a resumed run RUNNING again, owned by this process (and its Slurm job, if any),
    without the tags of its interruption."""
    client = logger.experiment
    client.update_run(logger.run_id, status="RUNNING")
    owner = process_tags()
    for key, value in owner.items():
        client.set_tag(logger.run_id, key, value)
    tags = client.get_run(logger.run_id).data.tags
    for key in ("failure", "status_reason", *(k for k in SLURM_TAGS if k not in owner)):
        if key in tags:
            client.delete_tag(logger.run_id, key)


def record_failure(
    logger: MLFlowLogger,
    err: BaseException,
    status: str,
    checkpoint: str | None = None,
    reason: str | None = None,
) -> None:
    """Tags saying why the run ended (``failure``: ``reason``, else the error;
    ``failed_at_step`` for a non-finite loss; ``checkpoint`` for a run that can be resumed)
    and the traceback as ``traceback.txt``."""
    failure = reason or f"{type(err).__name__}: {err}"
    tags = {"failure": failure[:5000], "status_reason": status}
    if checkpoint:
        tags["checkpoint"] = checkpoint
    if isinstance(err, NonFiniteLoss):
        tags["failed_at_step"] = str(err.step)
    client = logger.experiment
    for key, value in tags.items():
        retry_if_locked(lambda k=key, v=value: client.set_tag(logger.run_id, k, v))
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    client.log_text(logger.run_id, text, "traceback.txt")


def end_run(logger: BatchedMLFlowLogger, status: str) -> None:
    """Mark the run ``FINISHED``, ``FAILED`` or ``KILLED``, once its metrics are stored."""
    logger.flush()
    retry_if_locked(lambda: logger.experiment.set_terminated(logger.run_id, status))
