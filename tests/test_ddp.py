"""Lightning DDP on CPU: 2 processes over gloo, one MLflow run, metrics logged once."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import run_train, sqlite_uri


def test_ddp_two_processes_log_once_from_rank_zero(tmp_path: Path, tiny_data) -> None:
    proc = run_train(
        tmp_path, tiny_data[0], "trainer=ddp", "trainer.accelerator=cpu", "dataset=multilabel",
        "dataset.n_samples=400", "dataset.val_size=80", "dataset.test_size=80",
        "dataset.batch_size=32", "head=sigmoid", "loss=bce_logits", "trainer.max_epochs=2",
        "trainer.log_every_n_steps=1", "progress_bar=log",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "distributed_backend=gloo" in proc.stdout + proc.stderr
    client = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    (run,) = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert len(steps) == len(set(steps)) > 1  # each step once: rank zero alone logs
    # 240 training samples over 2 ranks: 4 batches of 32 per rank per epoch
    assert sorted(steps) == list(range(8))
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 2
