"""A one-screen Rich table of runs' test metrics, read back from MLflow.

Printed by a Hydra callback at the end of every multirun (its sweep's runs) and by
``python -m lossbench.report.summary`` (the experiment's latest runs, or one sweep's).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Callable
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

from lossbench.errors import LossbenchError, check_writable_dir, exit_on_user_error
from lossbench.tracking.mlflow_run import NOT_HASHED, sweep_id
from lossbench.tracking.store import (
    check_store,
    close_stale,
    experiment_named,
    open_store,
    prepare_store,
    resolve_tracking_uri,
    retry_if_locked,
    sqlite_path,
)

OUTCOME = "outcome.json"  # each sweep job's status, written into its output dir
TAGS = ("dataset", "head", "loss", "seed")
# Test metrics shown, per task: multi-label `acc` is exact match, so Hamming accuracy,
# micro-F1 and mAP are shown beside it.
COLUMNS = {
    "multiclass": ("test/acc", "test/f1_macro", "test/f1_micro", "test/loss"),
    "multilabel": ("test/acc", "test/hamming_acc", "test/f1_micro", "test/map", "test/loss"),
}
ALREADY_DONE = "this config already has a FINISHED run; rerun=true trains it again"
SKIPPED_TAG = "lossbench.skipped."  # + sweep id: an experiment tag holding the sweep's skipped jobs
REPORT_TAG = "report_of"  # tags a report's summary run (its value: the sweep id, or "all")


def find_runs(
    client: MlflowClient, experiment: str, sweep: str | None = None, limit: int = 50
) -> list[Run]:
    """Training runs of ``experiment`` (of one sweep if given; report runs left out), newest
    first. An unknown experiment or sweep is refused, naming those that exist."""
    exp = experiment_named(client, experiment)
    runs = training_runs(client, exp.experiment_id, sweep, limit)
    if sweep and not runs:
        known = {r.data.tags.get("sweep_id") for r in client.search_runs([exp.experiment_id])}
        sweeps = ", ".join(sorted(s for s in known if s)) or "none"
        raise LossbenchError(
            f"experiment {experiment!r} has no run of sweep {sweep!r}; its sweeps: {sweeps}. "
            "Fix: --sweep <one of those> (each sweep's closing table names its id)"
        )
    return runs


def training_runs(
    client: MlflowClient, experiment_id: str, sweep: str | None, limit: int
) -> list[Run]:
    """The runs of an experiment (of one sweep), newest first, without the reports' runs."""
    query = f"tags.{REPORT_TAG} IS NULL" + (f" and tags.sweep_id = '{sweep}'" if sweep else "")
    return client.search_runs(
        [experiment_id], query, max_results=limit, order_by=["attributes.start_time DESC"]
    )


def columns(runs: list[Run]) -> list[str]:
    """The test metrics to show for these runs' tasks (multi-class first; AUROC for two-class
    sets)."""
    tasks = {r.data.tags.get("task", "multiclass") for r in runs} or {"multiclass"}
    chosen = [c for t in COLUMNS if t in tasks for c in COLUMNS[t]]
    if any("test/auroc" in r.data.metrics for r in runs):  # a two-class set
        chosen.insert(chosen.index("test/loss"), "test/auroc")
    return list(dict.fromkeys(chosen))


def _stress(run: Run) -> tuple[str, float, float]:
    """(noise kind, noise rate, imbalance factor) of a run; ("", 0, 1) if clean."""
    p = run.data.params
    rate = float(p.get("dataset/noise/rate", 0) or 0)
    kind = p.get("dataset/noise/kind", "symmetric") if rate else ""
    return kind, rate, max(float(p.get("dataset/imbalance/factor", 1) or 1), 1.0)


def _rank(run: Run, condition: str = "") -> tuple:
    """Dataset, then stress (clean first, then by imbalance, noise), then the other conditions,
    then best test acc first."""
    kind, rate, factor = _stress(run)
    acc = run.data.metrics.get("test/acc", float("-inf"))
    return run.data.tags.get("dataset", "?"), kind, rate, factor, condition, -acc


def stress_of(run: Run) -> str:
    """A run's stress conditions, e.g. ``symmetric noise 0.2, imbalance 10``; "" if none."""
    kind, rate, factor = _stress(run)
    parts = [f"{kind} noise {rate:g}"] if rate else []
    return ", ".join([*parts, f"imbalance {factor:g}"] if factor > 1 else parts)


# Params that never tell settings apart: where or how a run is stored or shown (the config
# hash's NOT_HASHED keys), and what the table names otherwise (head, loss, seed, stress).
NOT_CONDITIONS = (
    *(k.replace(".", "/") for k in NOT_HASHED), "seed", "head", "loss", "output_dir",
    "data_source", "dataset/name", "dataset/noise/rate", "dataset/noise/kind",
    "dataset/imbalance/factor",
)  # fmt: skip
CHOICES = ("/name", "/_target_")  # the param that says which option of a config group ran


def varying_keys(params: list[dict[str, str]]) -> set[str]:
    """The keys whose value differs between the runs' ``params`` (among the runs that have the
    key: one recorded before the key existed does not make it vary)."""
    return {k for d in params for k in d if len({e[k] for e in params if k in e}) > 1}


SEEDED = "${seed}"


def mark_seeded(params: list[dict[str, str]], seeds: list[str]) -> None:
    """In place: where a key's value is its run's own seed (``seeds``, one per ``params``) in
    runs of two seeds or more (``dataset/split_seed`` set to ``${seed}``: each seed its own
    split), that value becomes ``${seed}``: one setting, the seed's, not one per seed (and apart
    from runs of a fixed value, ``dataset.split_seed=0``; a run whose seed equals that fixed
    value is one of them: the same config)."""
    for key in {k for d in params for k in d}:
        fixed = {d[key] for d, seed in zip(params, seeds, strict=True) if d.get(key, seed) != seed}
        following = [i for i, (d, seed) in enumerate(zip(params, seeds, strict=True))
                     if d.get(key) == seed and seed not in fixed]  # fmt: skip
        if len({seeds[i] for i in following}) > 1:
            for i in following:
                params[i][key] = SEEDED


def conditions(runs: list[Run]) -> dict[str, str]:
    """Per run id, the config values that vary between runs of one dataset and stress condition
    other than head, loss (and their parameters) and seed, e.g. ``model=cnn`` or
    ``optimizer.lr=0.01``: runs that differ in them are not seeds of one comparison but settings
    of their own (ce on an MLP beside focal on a CNN compares nothing); "" where none varies. A
    tuned comparison's lr (``tuned_lr``) is its pair's own; the noise (imbalance) options of a
    run without noise (imbalance) do nothing; a value that is each run's own seed
    (``dataset.split_seed='${seed}'``: each seed its own split) is the seed's
    (:func:`mark_seeded`). A group's choice (``model/name``, ``optimizer/_target_``) names it;
    its other parameters are left out."""

    def config(r: Run) -> dict[str, str]:
        _, rate, factor = _stress(r)
        left_out = [*NOT_CONDITIONS, *["dataset/noise"] * (not rate),
                    *["dataset/imbalance"] * (factor <= 1)]  # fmt: skip
        if any(k.startswith("tuned_lr/") for k in r.data.params):
            left_out.append("optimizer/lr")  # each pair's own
        return {k: v for k, v in r.data.params.items()
                if not any(k == n or k.startswith(n + "/") for n in left_out)}  # fmt: skip

    def where(r: Run) -> tuple[Any, str]:
        return r.data.tags.get("dataset"), stress_of(r)

    configs = {r.info.run_id: config(r) for r in runs}
    settings: dict[tuple, list[dict[str, str]]] = defaultdict(list)
    seeds: dict[tuple, list[str]] = defaultdict(list)
    for r in runs:
        settings[where(r)].append(configs[r.info.run_id])
        seeds[where(r)].append(r.data.tags.get("seed", ""))
    for setting, found in settings.items():
        mark_seeded(found, seeds[setting])
    varying = {setting: varying_keys(found) for setting, found in settings.items()}
    out = {}
    for r in runs:
        keys, own = varying[where(r)], configs[r.info.run_id]
        chosen = {k.split("/")[0] for k in keys if k.endswith(CHOICES)}
        named = [f"{k.split('/')[0]}={own[k]}" if k.endswith(CHOICES)
                 else f"{k.replace('/', '.')}={own[k]}"
                 for k in sorted(keys) if k in own
                 and (k.endswith(CHOICES) or k.split("/")[0] not in chosen)]  # fmt: skip
        out[r.info.run_id] = ", ".join(named)
    return out


def variants(runs: list[Run], setting: Callable[[Run], str] | None = None) -> dict[str, str]:
    """Per run id, its loss and head parameters that vary between runs of the same setting
    (default: dataset) and loss (head), e.g. ``gamma=1`` or ``binary_outputs=2``; "" if none.
    A parameter some runs lack (recorded before it existed) varies only among those that have
    it."""
    setting = setting or (lambda r: r.data.tags.get("dataset", "?"))
    own: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        for part in ("loss", "head"):
            params = {k: v for k, v in r.data.params.items()
                      if k.startswith(f"{part}/") and k != f"{part}/name"}  # fmt: skip
            own[setting(r), part, r.data.tags.get(part)].append(params)
    varying = {key: sorted(varying_keys(dicts)) for key, dicts in own.items()}
    out = {}
    for r in runs:
        where, tags, params = setting(r), r.data.tags, r.data.params
        keys = varying[where, "loss", tags.get("loss")] + varying[where, "head", tags.get("head")]
        out[r.info.run_id] = ", ".join(f"{k.split('/', 1)[1]}={params[k]}" for k in keys
                                       if k in params)  # fmt: skip
    return out


def table(runs: list[Run], title: str) -> Table:
    """Runs by dataset, stress conditions and other config values that vary between them, each
    setting's ranked by test accuracy. Columns: dataset, stress (label noise, imbalance; where any
    run has them), config (:func:`conditions`, where any), head, loss, variant (where loss or
    head parameters vary), seed, lr, status and test metrics (for multi-label sets: exact-match
    acc, Hamming acc, micro-F1, mAP)."""
    shown = columns(runs)
    variant = variants(runs)
    stress = {r.info.run_id: stress_of(r) for r in runs}
    condition = conditions(runs)
    own = {"stress": stress, "config": condition, "variant": variant}  # columns, not tags
    tags = [TAGS[0], *(c for c in ("stress", "config") if any(own[c].values())), *TAGS[1:3],
            *(["variant"] if any(variant.values()) else []), *TAGS[3:]]  # fmt: skip
    caption = "multi-label acc: exact match" if "test/map" in shown else None
    out = Table(title=title, box=box.SIMPLE_HEAD, caption=caption)
    for col in (*tags, "lr", "status"):
        out.add_column(col)
    for col in shown:
        out.add_column(col.removeprefix("test/"), justify="right")
    ranked = sorted(runs, key=lambda r: _rank(r, condition[r.info.run_id]))
    for r in ranked:
        values = [r.data.metrics.get(c) for c in shown]
        cells = ["—" if v is None else f"{v:.4f}" for v in values]
        lr = r.data.params.get("optimizer/lr")
        row = [(own[t][r.info.run_id] or "—") if t in own else r.data.tags.get(t, "?")
               for t in tags]  # fmt: skip
        out.add_row(*row, "?" if lr is None else f"{float(lr):.3g}", r.info.status, *cells)
    return out


def print_run(tracking_uri: str, run_id: str) -> None:
    """The table for one finished run."""
    run = open_store(tracking_uri).get_run(run_id)
    _console().print(table([run], f"test metrics, run {run.info.run_name} ({run_id})"))


def outcomes(sweep_dir: str | Path) -> list[dict]:
    """The ``outcome.json`` of every job of a sweep (any launcher: they are files), in job
    order. A job that started (Hydra wrote its ``.hydra/`` folder) but left no outcome crashed:
    it counts as FAILED."""

    def job_order(path: Path) -> list:  # 2 before 10: the sweep's job numbers, not text
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]

    jobs = []
    for hydra_dir in sorted(Path(sweep_dir).glob("**/.hydra"), key=job_order):
        outcome = hydra_dir.parent / OUTCOME
        if outcome.is_file():
            jobs.append(json.loads(outcome.read_text()))
        else:
            jobs.append(
                {
                    "status": "FAILED",
                    "overrides": _overrides(hydra_dir),
                    "reason": f"the job ended without an outcome (see {hydra_dir.parent})",
                }
            )
    return jobs


def _overrides(hydra_dir: Path) -> list[str]:
    from omegaconf import OmegaConf

    try:
        return list(OmegaConf.load(hydra_dir / "overrides.yaml"))
    except OSError:
        return []


def record_skipped(client: MlflowClient, experiment_id: str, sweep: str, jobs: list[dict]) -> None:
    """Keep a sweep's skipped jobs, which open no MLflow run, for the report: the experiment tag
    ``lossbench.skipped.<sweep id>``, JSON ``{"groups": [{"reason", "jobs"}], "omitted": n}``,
    one group per reason (its first sentence), each job its list of overrides. The jobs whose
    config already had a FINISHED run form one group with ``"runs"``, each job's run id. Groups
    that would pass MLflow's 20,000-character limit are counted in ``omitted``."""
    groups: dict[str, dict[str, list]] = {}
    for job in jobs:
        if job["status"] != "SKIPPED":
            continue
        if job.get("run_id"):  # errors.AlreadyDone: the run is in the store, maybe in the report
            group = groups.setdefault(ALREADY_DONE, {"jobs": [], "runs": []})
            group["runs"].append(job["run_id"])
        else:
            group = groups.setdefault(job.get("reason", "").split(". ")[0][:300], {"jobs": []})
        group["jobs"].append(job["overrides"])
    if not groups:
        return
    kept = [{"reason": r, **g} for r, g in groups.items()]
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
    """Hydra callback of every run and sweep.

    Before a single run, and before a sweep's first job: the output folder must be writable
    (else one message and exit 2). A sweep then creates the experiment once in an existing
    store (a new SQLite file: checked, and left to the first job to create, so that a sweep
    whose jobs fail to compose leaves no store), and closes this host's runs whose process
    died. When the sweep ends: record its skipped jobs in the experiment (for the report), print
    its runs as a table and the count of finished, failed and skipped jobs with the reasons, and
    exit 1 if any job failed or the summary itself could not be made. (Hydra turns a callback's
    exception into a warning: errors leave by exit.)
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        with exit_on_user_error("lossbench"):
            check_writable_dir(config.hydra.run.dir, "the output folder (hydra.run.dir)",
                               "set hydra.run.dir to a writable folder")  # fmt: skip

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        lg = config.logger
        with exit_on_user_error("lossbench"):
            check_writable_dir(config.hydra.sweep.dir, "the sweep folder (hydra.sweep.dir)",
                               "set hydra.sweep.dir to a writable folder")  # fmt: skip
            path = sqlite_path(resolve_tracking_uri(lg.tracking_uri))
            if path is not None and not path.exists():  # its first job creates it (under a
                check_store(lg.tracking_uri)  # lock): a sweep whose jobs fail to compose, none
                return
            try:
                client = prepare_store(lg.tracking_uri, lg.experiment_name, lg.artifact_location)
                close_stale(client)
            except LossbenchError:
                raise
            except Exception as err:  # no job could record anything: stop before the first
                print(f"lossbench: the store {lg.tracking_uri} could not be prepared: "
                      f"{type(err).__name__}: {err}", file=sys.stderr)  # fmt: skip
                sys.exit(1)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            jobs = outcomes(config.hydra.sweep.dir)
        except Exception as err:
            print(f"lossbench: the sweep's jobs cannot be counted ({err!r})", file=sys.stderr)
            sys.exit(1)
        counts = {k: sum(j["status"] == k for j in jobs) for k in ("FINISHED", "FAILED", "SKIPPED")}
        try:
            self._summary(config, jobs, _console())
            summary_failed = False
        except Exception as err:  # the jobs are counted all the same
            print(f"lossbench: the sweep's summary table failed: {type(err).__name__}: {err}")
            summary_failed = True
        print(f"jobs: {counts['FINISHED']} finished, {counts['FAILED']} failed, "
              f"{counts['SKIPPED']} skipped")  # fmt: skip
        for line in unfinished_lines(jobs):
            print(line)
        sys.stdout.flush()
        if counts["FAILED"] or summary_failed:
            sys.exit(1)

    @staticmethod
    def _summary(config: DictConfig, jobs: list[dict], console: Console) -> None:
        sweep = sweep_id(config.hydra.sweep.dir)
        client = prepare_store(config.logger.tracking_uri)
        exp = experiment_named(client, config.logger.experiment_name)
        record_skipped(client, exp.experiment_id, sweep, jobs)
        runs = training_runs(client, exp.experiment_id, sweep, limit=5000)
        shown = {r.info.run_id for r in runs}
        # runs of other sweeps that jobs of this one name: already finished (shown, not trained
        # again), or resumed (resume=<id> continues a run of the sweep that started it)
        named = [i for j in jobs for i in j.get("run_id", "").split(",") if i and i not in shown]
        runs += [client.get_run(i) for i in dict.fromkeys(named)]
        title = (
            f"sweep {sweep} ({Path(config.hydra.sweep.dir).name}): {len(runs)} runs in "
            f"experiment {config.logger.experiment_name!r}"
        )
        console.print(table(runs, title))


def _shared(overrides: list[list[str]]) -> list[str]:
    """The overrides all of these jobs had (none for a single job)."""
    if len(overrides) < 2:
        return []
    return [o for o in overrides[0] if all(o in own for own in overrides[1:])]


def _shown(override: str) -> str:
    """An override as typed: Hydra's sweeper escapes the special characters of a swept value
    (``'dataset.split_seed=0,${seed}'`` gives ``dataset.split_seed=$\\{seed\\}``)."""
    return re.sub(r"\\([\\()\[\]{}:=, \t])", r"\1", override)


def unfinished_lines(jobs: list[dict]) -> list[str]:
    """The sweep's failed and skipped jobs, in job order: the overrides every job of the sweep
    had, said once; then one line per status and reason, e.g. ``skipped: head=softmax
    loss=bce_logits (2 jobs: seed=1; seed=2): <reason>`` (the jobs' shared overrides, then what
    each has of its own)."""
    jobs = [{**j, "overrides": [_shown(o) for o in j["overrides"]]} for j in jobs]
    listed = [job for job in jobs if job["status"] != "FINISHED"]
    common = _shared([j["overrides"] for j in jobs])
    lines = [f"  (every job had: {' '.join(common)})"] if listed and common else []
    groups: dict[tuple[str, str], list[list[str]]] = {}
    for job in listed:
        own = [o for o in job["overrides"] if o not in common]
        groups.setdefault((job["status"], job.get("reason", "")), []).append(own)
    for (status, reason), owns in groups.items():
        if len(owns) == 1:
            which = " ".join(owns[0]) or "(no other override)"
        else:
            shared = _shared(owns)
            each = "; ".join(" ".join(o for o in own if o not in shared) or "-" for own in owns)
            which = " ".join([*shared, f"({len(owns)} jobs: {each})"])
        lines.append(f"  {status.lower()}: {which}: {reason}")
    return lines


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)  # a log: no wrapped cells


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="lossbench")
    parser.add_argument("--sweep", default=None, help="a sweep_id tag")
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)
    with exit_on_user_error("lossbench.report.summary"):
        runs = find_runs(open_store(args.tracking_uri), args.experiment, args.sweep, args.limit)
    _console().print(
        table(runs, f"test metrics, {len(runs)} runs of experiment {args.experiment!r}")
    )


if __name__ == "__main__":
    main()
