"""Parallel jobs (Hydra's joblib launcher) writing to one SQLite store lose nothing."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import run_train, sqlite_uri


def test_eight_parallel_jobs_leave_eight_complete_runs(tmp_path: Path, tiny_data) -> None:
    proc = run_train(
        tmp_path, tiny_data[0], "hydra/launcher=joblib", "hydra.launcher.n_jobs=8",
        "seed=1,2,3,4,5,6,7,8", "dataset=multilabel", "dataset.n_samples=400",
        "dataset.val_size=80", "dataset.test_size=80", "dataset.batch_size=32",
        "head=sigmoid", "loss=bce_logits", "trainer.max_epochs=2", "trainer.accelerator=cpu",
        "trainer.log_every_n_steps=1", "progress_bar=log",
        multirun=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "jobs: 8 finished, 0 failed, 0 skipped" in proc.stdout
    client = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    runs = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    assert sorted(int(r.data.tags["seed"]) for r in runs) == list(range(1, 9))
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["sweep_id"] for r in runs}) == 1
    steps_per_epoch = -(-(400 - 80 - 80) // 32)
    for r in runs:
        history = client.get_metric_history(r.info.run_id, "train/loss")
        assert sorted(m.step for m in history) == list(range(2 * steps_per_epoch))
        assert len(client.get_metric_history(r.info.run_id, "val/loss")) == 2
        assert "test/acc" in r.data.metrics


def test_two_sweeps_started_together_on_a_fresh_store_lose_nothing(
    tmp_path: Path, tiny_data
) -> None:
    """The store is created once (its lock file) whichever sweep gets there first."""
    import subprocess
    import sys

    from conftest import ROOT

    store = tmp_path / "fresh" / "mlflow.db"
    common = [
        f"data_dir={tiny_data[0]}", f"logger.tracking_uri={sqlite_uri(store)}",
        "dataset=multilabel", "dataset.n_samples=300", "dataset.val_size=60",
        "dataset.test_size=60", "head=sigmoid", "loss=bce_logits", "trainer.max_epochs=1",
        "trainer.accelerator=cpu", "progress_bar=log", f"output_roots=[{tmp_path}]",
    ]  # fmt: skip
    sweeps = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "train.py"),
                "-m",
                *common,
                f"seed={seeds}",
                f"hydra.sweep.dir={tmp_path / name}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )  # fmt: skip
        for name, seeds in (("a", "1,2,3,4"), ("b", "5,6,7,8"))
    ]
    for proc in sweeps:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-4000:]
        assert "jobs: 4 finished, 0 failed, 0 skipped" in out
    client = MlflowClient(sqlite_uri(store))
    runs = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    assert sorted(int(r.data.tags["seed"]) for r in runs) == list(range(1, 9))
    assert all(r.info.status == "FINISHED" for r in runs)
    assert (store.parent / "mlflow.db.lock").exists()
