"""The MLflow side of a run: store URI, run name and tags, params, artifacts, final status."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning_utilities.core.rank_zero import rank_zero_only
from matplotlib.figure import Figure
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from pytorch_lightning.loggers import MLFlowLogger

LOSS_CURVES = "loss_curves.png"
CONFIG_ARTIFACT = "config.yaml"
THRESHOLDS = "thresholds.json"


def resolve_tracking_uri(uri: str) -> str:
    """``uri`` with a relative ``sqlite:`` or file path made absolute (against the cwd).

    Hydra gives each job its own output dir; every job of a sweep must hit the same store.
    """
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        return f"sqlite:///{Path(path).expanduser().resolve()}"
    if "://" not in uri:
        return Path(uri).expanduser().resolve().as_uri()
    return uri


def default_artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store go in ``mlruns/`` beside the database; servers choose."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlruns").as_uri()
    return None


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
            self.experiment.log_batch(self.run_id, metrics=pending[i : i + 1000])
        self._last_write = time.monotonic()

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self.flush()
        super().finalize(status)


def make_logger(
    tracking_uri: str,
    experiment_name: str,
    name: str,
    tags: Mapping[str, Any],
    artifact_location: str | None = None,
) -> BatchedMLFlowLogger:
    """The MLflow logger for one run; the run opens on first use of ``run_id``."""
    uri = resolve_tracking_uri(tracking_uri)
    return BatchedMLFlowLogger(
        experiment_name=experiment_name,
        run_name=name,
        tracking_uri=uri,
        tags={k: str(v) for k, v in tags.items()},
        artifact_location=artifact_location or default_artifact_location(uri),
    )


def log_config(logger: MLFlowLogger, params: Mapping[str, Any], yaml_text: str) -> None:
    """The resolved config as params (flattened with ``/``) and as ``config.yaml``."""
    logger.log_hyperparams(dict(params))
    logger.experiment.log_text(logger.run_id, yaml_text, CONFIG_ARTIFACT)


def log_thresholds(logger: MLFlowLogger, thresholds: list[float]) -> None:
    """Per-class decision thresholds tuned on the validation split, as ``thresholds.json``."""
    logger.experiment.log_dict(logger.run_id, {"thresholds": thresholds}, THRESHOLDS)


def log_loss_curves(logger: BatchedMLFlowLogger) -> None:
    """Plot the recorded train/val loss histories (read back from the store) as a PNG."""
    logger.flush()
    client: MlflowClient = logger.experiment
    fig = Figure(figsize=(7, 4), layout="constrained")
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
    ax.set_title(client.get_run(logger.run_id).info.run_name)
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


def end_run(logger: BatchedMLFlowLogger, status: str) -> None:
    """Mark the run ``FINISHED``, ``FAILED`` or ``KILLED``, once its metrics are stored."""
    logger.flush()
    logger.experiment.set_terminated(logger.run_id, status)
