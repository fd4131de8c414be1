"""A real `mlflow server` process on 127.0.0.1: a tiny run trains into it over HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import compose_cfg
from lossbench.tracking.ui import free_port, wait_for_http
from lossbench.training import run


@pytest.fixture
def server(tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
         f"sqlite:///{tmp_path}/server.db", "--artifacts-destination", str(tmp_path / "art"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        try:
            wait_for_http(f"{url}/health", proc, timeout=120)
        except RuntimeError as err:
            pytest.fail(f"{err}: {proc.stderr.read()[-2000:]}")
        except TimeoutError as err:
            pytest.fail(str(err))
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_tiny_run_is_recorded_on_a_tracking_server(server: str, tmp_path: Path) -> None:
    cfg = compose_cfg(
        [
            "dataset=multilabel", "dataset.n_samples=300", "dataset.val_size=60",
            "dataset.test_size=60", "head=sigmoid", "loss=bce_logits", "trainer.max_epochs=1",
            "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "progress_bar=log",
            f"logger.tracking_uri={server}", "logger.experiment_name=team",
        ],
        tmp_path,
    )  # fmt: skip
    run_id = run.train(cfg)
    client = MlflowClient(server)
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert {"train/loss", "val/loss", "test/acc", "test/map"} <= set(got.data.metrics)
    assert got.data.tags["loss"] == "bce_logits"
    assert {a.path for a in client.list_artifacts(run_id)} >= {"config.yaml", "loss_curves.png"}
    assert (tmp_path / "art").is_dir()  # artifacts went through the server's proxy
