"""Ctrl-C or SIGTERM ends a run KILLED with a last checkpoint; resume=<run id> finishes it in
the same MLflow run."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, run_train, sqlite_uri

ARGS = [
    "dataset=multilabel", "dataset.n_samples=400", "dataset.val_size=80", "dataset.test_size=80",
    "dataset.batch_size=32", "head=sigmoid", "loss=bce_logits", "trainer.max_epochs=60",
    "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "progress_bar=log",
]  # fmt: skip


def interrupted_run(tmp_path: Path, data_dir: Path, sig: signal.Signals):
    """train.py stopped by ``sig`` once its third epoch is logged; returns (returncode, run)."""
    store = tmp_path / "mlflow.db"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={tmp_path / 'out1'}",
         f"data_dir={data_dir}", f"logger.tracking_uri={sqlite_uri(store)}", *ARGS],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )  # fmt: skip
    log = []
    for line in proc.stdout:
        log.append(line)
        if "epoch 3/60" in line:
            break
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=120)
    client = MlflowClient(sqlite_uri(store))
    (run,) = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    assert run.info.status == "KILLED", "".join(log) + rest
    return proc.returncode, run


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 1), (signal.SIGTERM, 143)])
def test_interrupt_ends_killed_with_a_checkpoint(tmp_path: Path, tiny_data, sig, code) -> None:
    returncode, run = interrupted_run(tmp_path, tiny_data[0], sig)
    assert returncode == code
    assert Path(run.data.tags["checkpoint"]).is_file()


def test_resume_finishes_a_killed_run_in_place(tmp_path: Path, tiny_data) -> None:
    _, killed = interrupted_run(tmp_path, tiny_data[0], signal.SIGTERM)
    client = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    assert client.get_metric_history(killed.info.run_id, "train/loss")

    resumed = run_train(tmp_path, tiny_data[0], *ARGS, f"resume={killed.info.run_id}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = client.get_run(killed.info.run_id)
    assert run.info.status == "FINISHED" and "failure" not in run.data.tags
    history = client.get_metric_history(run.info.run_id, "train/loss")
    steps_per_epoch = -(-(400 - 80 - 80) // 32)
    assert sorted(m.step for m in history) == list(range(60 * steps_per_epoch))  # none twice
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 60
    assert "test/acc" in run.data.metrics


@pytest.mark.parametrize("every_n_train_steps", [0, 5])
def test_checkpoint_keeps_lightnings_state_key(every_n_train_steps: int) -> None:
    """lossbench's Checkpoint stores its state under ModelCheckpoint's key, so that checkpoints
    of either resume with the other."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from lossbench.checkpoint import Checkpoint

    settings = {"monitor": "val/acc", "mode": "max", "every_n_train_steps": every_n_train_steps}
    assert Checkpoint(**settings).state_key == ModelCheckpoint(**settings).state_key
    assert Checkpoint(**settings).state_key != Checkpoint(monitor="val/loss").state_key
