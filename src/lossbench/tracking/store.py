"""The MLflow store as a whole: where it is, whether it can be used, creating it exactly once,
opening it for reading without creating anything, and closing runs whose process died.

A SQLite store is created and migrated by the first MLflow client that opens it, which races
when several processes start at once (``table ... already exists``). Every lossbench process
that may write opens it through :func:`prepare_store`, which holds a lock file beside the
database (``mlflow.db.lock``) while MLflow creates the schema and the experiment.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TypeVar

import requests
from filelock import FileLock
from mlflow.entities import Experiment, Run, ViewType
from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lossbench.errors import LossbenchError, check_writable_dir

T = TypeVar("T")
log = logging.getLogger("lossbench")
SQLITE = "sqlite:///"
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
HOST_TAG, PID_TAG, PID_START_TAG, OUTPUT_TAG = "host", "pid", "pid_start", "output_dir"
# The Slurm job a run's process belongs to: tag <- Slurm's environment variable
SLURM_TAGS = {"slurm_job_id": "SLURM_JOB_ID", "slurm_array_job_id": "SLURM_ARRAY_JOB_ID",
              "slurm_array_task_id": "SLURM_ARRAY_TASK_ID"}  # fmt: skip
RETRY_MESSAGE = "database is locked: write retried in %.1f s (try %d of %d)"
FIX = "set logger.tracking_uri to a writable sqlite:///path/mlflow.db or a running server"


def resolve_tracking_uri(uri: str) -> str:
    """``uri`` with a relative ``sqlite:`` or file path made absolute (against the cwd).

    Hydra gives each job its own output dir; every job of a sweep must hit the same store.
    """
    if uri.startswith(SQLITE):
        return f"{SQLITE}{Path(uri[len(SQLITE) :]).expanduser().resolve()}"
    if "://" not in uri:
        return Path(uri).expanduser().resolve().as_uri()
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    uri = resolve_tracking_uri(uri)
    return Path(uri[len(SQLITE) :]) if uri.startswith(SQLITE) else None


def default_artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store go in ``mlruns/`` beside the database; servers choose."""
    path = sqlite_path(uri)
    return (path.parent / "mlruns").as_uri() if path is not None else None


def retry_if_locked(write: Callable[[], T], tries: int = 6) -> T:
    """``write()``, retried with a short backoff (0.1 s … 3.2 s) while SQLite says
    ``database is locked`` (busy parallel writers on one store); each retry is logged
    (``RETRY_MESSAGE``)."""
    for attempt in range(tries):
        try:
            return write()
        except MlflowException as err:
            if "database is locked" not in str(err) or attempt == tries - 1:
                raise
            log.warning(RETRY_MESSAGE, 0.1 * 2**attempt, attempt + 2, tries)
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")


def _check_database_file(path: Path, uri: str) -> None:
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
        if header != SQLITE_HEADER:
            raise LossbenchError(
                f"the tracking store {uri} is not an SQLite database (the file {path} holds "
                f"something else). Fix: point logger.tracking_uri at an MLflow store, or move "
                f"that file away"
            )


def is_server(uri: str) -> bool:
    """Whether ``uri`` is a tracking server's (``http(s)://``; it serves the UI itself)."""
    return uri.startswith(("http://", "https://"))


def check_store(tracking_uri: str) -> None:
    """Fail fast, with the fix, when the store cannot be written or reached, or is no database."""
    uri = resolve_tracking_uri(tracking_uri)
    path = sqlite_path(uri)
    if path is not None:
        check_writable_dir(path.parent, f"the tracking store {uri}", FIX)
        _check_database_file(path, uri)
    elif is_server(uri):
        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=5).raise_for_status()
        except requests.RequestException as err:
            raise LossbenchError(
                f"the tracking server {uri} cannot be reached ({type(err).__name__}); "
                f"start it (`make server`) or {FIX}"
            ) from None


def _client(uri: str) -> MlflowClient:
    """A client of the store at ``uri``. MLflow creates (and migrates) a SQLite store's schema
    when it first opens it: that happens under the lock file beside the database."""
    path = sqlite_path(uri)
    with FileLock(f"{path}.lock") if path is not None else nullcontext():
        client = MlflowClient(uri)  # may create the store's tables
        client.search_experiments(max_results=1)
    return client


def prepare_store(
    tracking_uri: str, experiment_name: str | None = None, artifact_location: str | None = None
) -> MlflowClient:
    """Create the store (schema) and the experiment if missing, each exactly once whatever
    the number of processes starting at once. Returns a client of the store."""
    uri = resolve_tracking_uri(tracking_uri)
    check_store(uri)
    client = _client(uri)
    path = sqlite_path(uri)
    if experiment_name and client.get_experiment_by_name(experiment_name) is None:
        with FileLock(f"{path}.lock") if path is not None else nullcontext():
            if client.get_experiment_by_name(experiment_name) is None:
                location = artifact_location or default_artifact_location(uri)
                try:
                    client.create_experiment(experiment_name, artifact_location=location)
                except MlflowException:  # a server: another process created it meanwhile
                    if client.get_experiment_by_name(experiment_name) is None:
                        raise
    return client


def existing_store(tracking_uri: str) -> MlflowClient | None:
    """A client of the store if it exists already (a SQLite file, or a server), else None."""
    uri = resolve_tracking_uri(tracking_uri)
    path = sqlite_path(uri)
    if path is not None and not (path.is_file() and path.stat().st_size):
        return None
    check_store(uri)
    return _client(uri)


def open_store(tracking_uri: str) -> MlflowClient:
    """A client of an existing store, for reading: a missing SQLite file is refused (MLflow
    would create an empty store at a misspelt path), naming the stores that do exist there."""
    uri = resolve_tracking_uri(tracking_uri)
    path = sqlite_path(uri)
    if path is not None and not path.is_file():
        near = sorted(str(p) for p in path.parent.glob("*.db")) if path.parent.is_dir() else []
        found = f"stores in {path.parent}: {', '.join(near)}" if near else (
            f"no .db file in {path.parent}")  # fmt: skip
        raise LossbenchError(
            f"there is no tracking store {uri} ({found}). Fix: give --tracking-uri "
            "sqlite:///<path of an existing mlflow.db> (`make run` creates ./mlflow.db)"
        )
    if path is not None:
        _check_database_file(path, uri)
    else:
        check_store(uri)
    return _client(uri)


def experiment_named(client: MlflowClient, name: str) -> Experiment:
    """The experiment called ``name``; refused, naming the experiments there, if none is."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        names = [e.name for e in client.search_experiments() if e.name != "Default"]
        raise LossbenchError(
            f"there is no experiment {name!r} in {client.tracking_uri}; it has: "
            f"{', '.join(names) or 'none'}. Fix: --experiment <one of those>"
        )
    return exp


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from Linux's /proc; else None."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return round(boot + ticks / os.sysconf("SC_CLK_TCK"), 2)


def process_tags() -> dict[str, str]:
    """Who runs this process: ``host``, ``pid`` and the process's start time ``pid_start``
    (which tells the process apart from a later one that reuses its number); inside a Slurm
    job also ``slurm_job_id``, and ``slurm_array_job_id``, ``slurm_array_task_id`` in an array
    (``SLURM_TAGS``, read from Slurm's environment)."""
    start = process_start(os.getpid())
    slurm = {tag: os.environ[var] for tag, var in SLURM_TAGS.items() if os.environ.get(var)}
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()),
            PID_START_TAG: "" if start is None else str(start), **slurm}  # fmt: skip


def process_alive(pid: int, start: str = "") -> bool:
    """Whether process ``pid`` still exists and is the one that started at ``start``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    now = process_start(pid)
    return not start or now is None or abs(now - float(start)) < 1.0


def close_stale(client: MlflowClient, host: str | None = None) -> list[str]:
    """Mark KILLED every RUNNING run of ``host`` (this machine) whose process is gone (killed by
    SIGKILL, out of memory, power cut), with its last checkpoint where one was saved, so that
    ``resume=<run id>`` continues it. Returns the ids of the runs closed."""
    host = host or socket.gethostname()
    closed = []
    for run in running_runs(client, f"tags.{HOST_TAG} = '{host}'"):
        tags = run.data.tags
        if not tags.get(PID_TAG, "").isdigit():
            continue
        pid = int(tags[PID_TAG])
        if process_alive(pid, tags.get(PID_START_TAG, "")):
            continue
        reason = (
            f"its process (pid {pid} on {host}) ended without closing the run: killed "
            "(SIGKILL, out of memory) or crashed; closed by lossbench"
        )
        closed.append(close_killed(client, run, reason))
    return closed


def close_slurm_job(client: MlflowClient, job_id: str, reason: str) -> list[str]:
    """Mark KILLED the RUNNING runs of Slurm job ``job_id`` (submitit's form: ``<array>_<task>``
    in an array), which ended without closing them. Returns the ids of the runs closed."""
    array, _, task = job_id.partition("_")
    query = (
        f"tags.slurm_array_job_id = '{array}' and tags.slurm_array_task_id = '{task}'"
        if task
        else f"tags.slurm_job_id = '{job_id}'"
    )
    return [close_killed(client, run, reason) for run in running_runs(client, query)]


def running_runs(client: MlflowClient, query: str) -> list[Run]:
    """The RUNNING runs, of every experiment, that match the search filter ``query``."""
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not experiments:
        return []
    return client.search_runs(experiments, f"attributes.status = 'RUNNING' and {query}",
                              max_results=1000)  # fmt: skip


def close_killed(client: MlflowClient, run: Run, reason: str) -> str:
    """Record ``run`` KILLED with ``reason``, and its last checkpoint where one was saved (so that
    ``resume=<run id>`` continues it); returns its id."""
    last = Path(run.data.tags.get(OUTPUT_TAG, "/nonexistent")) / "checkpoints" / "last.ckpt"
    update = {"failure": reason, "status_reason": "KILLED"}
    if last.is_file():
        update["checkpoint"] = str(last)
    run_id = run.info.run_id
    for key, value in update.items():
        retry_if_locked(lambda r=run_id, k=key, v=value: client.set_tag(r, k, v))
    retry_if_locked(lambda r=run_id: client.set_terminated(r, "KILLED"))
    return run_id


@contextmanager
def quiet_downloads() -> Iterator[None]:
    """No progress bar per artifact download (MLflow draws one by default)."""
    saved = MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.get_raw()
    os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name)
        else:
            os.environ[MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR.name] = saved
