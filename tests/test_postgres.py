"""A team's tracking server for real: `mlflow server` on PostgreSQL (deploy/postgres/up.sh, the
driver from the project's `server` extra) takes a sweep of 16 parallel jobs and loses nothing.

Without a PostgreSQL that accepts connections, the fixture runs up.sh once (Debian's postgresql
through apt); where that cannot work (no apt, not root: its exit status 3) the tests skip.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from mlflow.tracking import MlflowClient
from psycopg import sql

from conftest import ROOT, TINY_OVERRIDES, TINY_SIZES, compose_cfg, run_train
from lossbench.tracking.store import RETRY_MESSAGE
from lossbench.tracking.ui import free_port, stop_group, wait_for_http

UP = ROOT / "deploy" / "postgres" / "up.sh"
NO_PRIVILEGE = 3  # up.sh's exit status when neither apt nor root is there
JOBS = 16
_outcome: dict[str, str] = {}  # up.sh runs at most once per session: its URL or why not


def configured_url() -> str:
    """The URL up.sh prints, from the same settings (LOSSBENCH_PG_*) and defaults."""

    def env(name: str) -> str:
        return quote(os.environ.get(f"LOSSBENCH_PG_{name}", "lossbench"), safe="")

    port = os.environ.get("LOSSBENCH_PG_PORT", "5432")
    return f"postgresql://{env('USER')}:{env('PASSWORD')}@127.0.0.1:{port}/{env('DB')}"


def accepts(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError:
        return False
    return True


def postgres_url() -> str:
    """The URL of a running PostgreSQL whose user may create databases: the configured one if
    it accepts connections, else what ``up.sh`` starts; skips where up.sh cannot."""
    if not _outcome:
        url = configured_url()
        if accepts(url):
            _outcome["url"] = url
        else:
            proc = subprocess.run(
                ["bash", str(UP)], capture_output=True, text=True, timeout=600,
                stdin=subprocess.DEVNULL, start_new_session=True,  # sudo must not prompt
            )  # fmt: skip
            if proc.returncode == 0:
                _outcome["url"] = proc.stdout.strip().splitlines()[-1]
            elif proc.returncode == NO_PRIVILEGE:
                _outcome["skip"] = f"no PostgreSQL at {url}, and {proc.stderr.strip()}"
            else:
                _outcome["fail"] = f"{UP} exited with {proc.returncode}: {proc.stderr[-3000:]}"
    if "skip" in _outcome:
        pytest.skip(_outcome["skip"])
    if "fail" in _outcome:
        pytest.fail(_outcome["fail"])
    return _outcome["url"]


@contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A new, empty database beside ``url``'s (dropped afterwards); yields its URL."""
    name = f"lossbench_test_{uuid.uuid4().hex[:12]}"
    # autocommit: CREATE/DROP DATABASE cannot run inside a transaction
    with psycopg.connect(url, connect_timeout=5, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"{url.rsplit('/', 1)[0]}/{name}"
        finally:
            # FORCE (PostgreSQL 13+): the test's own clients may still hold connections
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def tracking_server(backend: str, artifacts: Path, log: Path) -> Iterator[str]:
    """``mlflow server`` (the command of ``make server``) on ``backend``, on a free port of
    127.0.0.1, until the block ends; yields its URL. Its output goes to ``log``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # Two workers and no GenAI job runner: lighter on 2 cores, the same tracking API and UI.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
             "--artifacts-destination", str(artifacts), "--host", "127.0.0.1",
             "--port", str(port), "--workers", "2"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,  # its workers share its process group
        )  # fmt: skip
    try:
        try:
            wait_for_http(f"{url}/health", proc, timeout=120)
        except (RuntimeError, TimeoutError) as err:
            pytest.fail(f"{err}; its output:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        stop_group(proc)


@contextmanager
def postgres_server(tmp: Path) -> Iterator[str]:
    """A tracking server on a fresh PostgreSQL database, artifacts under ``tmp``; its URL."""
    with (
        fresh_database(postgres_url()) as backend,
        tracking_server(backend, tmp / "artifacts", tmp / "server.log") as url,
    ):
        yield url


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with postgres_server(tmp_path) as url:
        yield url


def test_sixteen_parallel_jobs_on_a_postgresql_server_lose_nothing(
    server: str, tmp_path: Path, tiny_data
) -> None:
    overrides = [
        *TINY_OVERRIDES, "trainer.log_every_n_steps=1",  # then every step is in the history
        f"logger.tracking_uri={server}",  # after run_train's own: the last value wins
    ]  # fmt: skip
    seeds = list(range(1, JOBS + 1))
    proc = run_train(
        tmp_path, tiny_data[0], *overrides, "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={JOBS}", f"seed={','.join(map(str, seeds))}",
        multirun=True,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert f"jobs: {JOBS} finished, 0 failed, 0 skipped" in proc.stdout
    assert RETRY_MESSAGE.split(":")[0] not in output
    assert not re.search("locked", output, re.I), "a writer met a lock"
    assert not (tmp_path / "mlflow.db").exists()  # nothing went to run_train's SQLite store

    cfg = compose_cfg(overrides, tmp_path / "compose")
    batches = min(
        cfg.trainer.limit_train_batches,
        math.ceil((TINY_SIZES["train"] - cfg.dataset.val_size) / cfg.dataset.batch_size),
    )
    epochs = cfg.trainer.max_epochs
    client = MlflowClient(server)
    runs = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    assert sorted(int(r.data.tags["seed"]) for r in runs) == seeds
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["sweep_id"] for r in runs}) == 1
    val_keys = {k for k in runs[0].data.metrics if k.startswith("val/") and "_best" not in k}
    assert {"val/loss", "val/acc"} <= val_keys
    for r in runs:
        history = client.get_metric_history(r.info.run_id, "train/loss")
        assert sorted(m.step for m in history) == list(range(epochs * batches)), r.info.run_name
        for key in val_keys:  # once per epoch, at the epoch's last step
            steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, key))
            assert steps == [batches * (e + 1) - 1 for e in range(epochs)], (r.info.run_name, key)
        assert "test/acc" in r.data.metrics
        assert {a.path for a in client.list_artifacts(r.info.run_id)} >= {"config.yaml"}
    assert (tmp_path / "artifacts").is_dir()  # artifacts went through the server's proxy
