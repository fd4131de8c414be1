"""A one-screen Rich table of runs' test metrics, read back from MLflow.

Printed by a Hydra callback at the end of every multirun (its sweep's runs) and by
``python -m lossbench.summary`` (the experiment's latest runs, or one sweep's).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_EXPERIMENT_TAG_VAL_LENGTH as TAG_LIMIT
from omegaconf import DictConfig
from rich import box
from rich.console import Console
from rich.table import Table

from lossbench.tracking import prepare_store, resolve_tracking_uri, retry_if_locked, sweep_id

OUTCOME = "outcome.json"  # each sweep job's status, written into its output dir
TAGS = ("dataset", "head", "loss", "seed")
COLUMNS = ("test/acc", "test/f1_macro", "test/f1_micro", "test/loss")
SKIPPED_TAG = "lossbench.skipped."  # + sweep id: an experiment tag holding the sweep's skipped jobs


def find_runs(
    tracking_uri: str, experiment: str, sweep: str | None = None, limit: int = 50
) -> list[Run]:
    """Runs of ``experiment`` (of one sweep if given), newest first."""
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    query = f"tags.sweep_id = '{sweep}'" if sweep else ""
    return client.search_runs(
        [exp.experiment_id], query, max_results=limit, order_by=["attributes.start_time DESC"]
    )


def table(runs: list[Run], title: str) -> Table:
    """Runs ranked by test accuracy: dataset, head, loss, seed, lr, status and test metrics."""
    out = Table(title=title, box=box.SIMPLE_HEAD)
    for col in (*TAGS, "lr", "status"):
        out.add_column(col)
    for col in COLUMNS:
        out.add_column(col.removeprefix("test/"), justify="right")
    ranked = sorted(runs, key=lambda r: -r.data.metrics.get("test/acc", float("-inf")))
    for r in ranked:
        values = [r.data.metrics.get(c) for c in COLUMNS]
        cells = ["—" if v is None else f"{v:.4f}" for v in values]
        tags = [r.data.tags.get(t, "?") for t in TAGS]
        lr = r.data.params.get("optimizer/lr")
        out.add_row(*tags, "?" if lr is None else f"{float(lr):.3g}", r.info.status, *cells)
    return out


def print_run(tracking_uri: str, run_id: str) -> None:
    """The table for one finished run."""
    run = MlflowClient(resolve_tracking_uri(tracking_uri)).get_run(run_id)
    _console().print(table([run], f"test metrics, run {run.info.run_name} ({run_id})"))


def outcomes(sweep_dir: str | Path) -> list[dict]:
    """The ``outcome.json`` of every job of a sweep (any launcher: they are files)."""
    return [json.loads(p.read_text()) for p in sorted(Path(sweep_dir).glob(f"**/{OUTCOME}"))]


def record_skipped(client: MlflowClient, experiment_id: str, sweep: str, jobs: list[dict]) -> None:
    """Keep a sweep's skipped jobs, which open no MLflow run, for the report: the experiment tag
    ``lossbench.skipped.<sweep id>``, JSON ``{"groups": [{"reason", "jobs"}], "omitted": n}``,
    one group per reason (its first sentence), each job its list of overrides. Groups that would
    pass MLflow's 20,000-character limit are counted in ``omitted``."""
    groups: dict[str, list[list[str]]] = {}
    for job in jobs:
        if job["status"] == "SKIPPED":
            reason = job.get("reason", "").split(". ")[0][:300]
            groups.setdefault(reason, []).append(job["overrides"])
    if not groups:
        return
    kept = [{"reason": r, "jobs": j} for r, j in groups.items()]
    omitted = 0
    while len(value := json.dumps({"groups": kept, "omitted": omitted})) > TAG_LIMIT:
        omitted += len(kept.pop()["jobs"])
    retry_if_locked(lambda: client.set_experiment_tag(experiment_id, SKIPPED_TAG + sweep, value))


def skipped_jobs(client: MlflowClient, experiment_id: str, sweep: str | None) -> list[dict]:
    """The records of :func:`record_skipped`: one sweep's, or every sweep's if ``sweep`` is None."""
    tags = client.get_experiment(experiment_id).tags
    keys = [SKIPPED_TAG + sweep] if sweep else sorted(k for k in tags if k.startswith(SKIPPED_TAG))
    return [json.loads(tags[k]) for k in keys if k in tags]


class SweepSummary(Callback):
    """Hydra callback. When a multirun starts, create the store and the experiment once, before
    any job (parallel jobs opening a fresh SQLite store race on its schema migration and on
    creating the experiment). When it ends, record its skipped jobs in the experiment (for the
    report), print its runs as a table, the count of finished, failed and skipped jobs with the
    reasons, and exit 1 if any job failed."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        lg = config.logger
        prepare_store(lg.tracking_uri, lg.experiment_name, lg.artifact_location)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = sweep_id(config.hydra.sweep.dir)
        runs = find_runs(config.logger.tracking_uri, config.logger.experiment_name, sweep)
        jobs = outcomes(config.hydra.sweep.dir)
        client = MlflowClient(resolve_tracking_uri(config.logger.tracking_uri))
        exp = client.get_experiment_by_name(config.logger.experiment_name)
        record_skipped(client, exp.experiment_id, sweep, jobs)
        runs += [
            client.get_run(j["run_id"]) for j in jobs if j["status"] == "SKIPPED" and "run_id" in j
        ]  # already finished earlier: shown, not trained again
        console = _console()
        title = (
            f"sweep {sweep} ({Path(config.hydra.sweep.dir).name}): {len(runs)} runs in "
            f"experiment {config.logger.experiment_name!r}"
        )
        console.print(table(runs, title))
        counts = {k: sum(j["status"] == k for j in jobs) for k in ("FINISHED", "FAILED", "SKIPPED")}
        console.print(
            f"jobs: {counts['FINISHED']} finished, {counts['FAILED']} failed, "
            f"{counts['SKIPPED']} skipped"
        )
        for job in jobs:
            if job["status"] != "FINISHED":
                console.print(
                    f"  {job['status'].lower()}: {' '.join(job['overrides'])}: "
                    f"{job.get('reason', '')}",
                    highlight=False,
                )
        if counts["FAILED"]:
            sys.exit(1)


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="lossbench")
    parser.add_argument("--sweep", default=None, help="a sweep_id tag")
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)
    runs = find_runs(args.tracking_uri, args.experiment, args.sweep, args.limit)
    _console().print(
        table(runs, f"test metrics, {len(runs)} runs of experiment {args.experiment!r}")
    )


if __name__ == "__main__":
    main()
