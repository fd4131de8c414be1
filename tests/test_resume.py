"""SIGTERM ends a run KILLED with a last checkpoint; resume=<run id> finishes it in place."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import ROOT, run_train, sqlite_uri

ARGS = [
    "dataset=multilabel", "dataset.n_samples=400", "dataset.val_size=80", "dataset.test_size=80",
    "dataset.batch_size=32", "head=sigmoid", "loss=bce_logits", "trainer.max_epochs=60",
    "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "progress_bar=log",
]  # fmt: skip


def test_sigterm_kills_with_checkpoint_and_resume_finishes(tmp_path: Path, tiny_data) -> None:
    store = tmp_path / "mlflow.db"
    common = [f"data_dir={tiny_data[0]}", f"logger.tracking_uri={sqlite_uri(store)}", *ARGS]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={tmp_path / 'out1'}", *common],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    log = []
    for line in proc.stdout:  # wait until training is under way, then SIGTERM
        log.append(line)
        if "epoch 3/60" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, "".join(log) + rest

    client = MlflowClient(sqlite_uri(store))
    (killed,) = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    assert killed.info.status == "KILLED", "".join(log) + rest
    checkpoint = Path(killed.data.tags["checkpoint"])
    assert checkpoint.is_file()
    steps_before = len(client.get_metric_history(killed.info.run_id, "train/loss"))
    assert steps_before > 0

    resumed = run_train(tmp_path, tiny_data[0], *ARGS, f"resume={killed.info.run_id}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    run = client.get_run(killed.info.run_id)
    assert run.info.status == "FINISHED" and "failure" not in run.data.tags
    history = client.get_metric_history(run.info.run_id, "train/loss")
    steps_per_epoch = -(-(400 - 80 - 80) // 32)
    assert sorted({m.step for m in history}) == list(range(60 * steps_per_epoch))
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 60
    assert "test/acc" in run.data.metrics
