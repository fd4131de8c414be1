"""Failures are data: failed runs are recorded with their reason, sweeps survive them, finished
configs are not trained twice, reruns reproduce, and bad input gets one message and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY_OVERRIDES, compose_cfg, run_train, sqlite_uri
from lossbench.errors import NonFiniteLoss
from lossbench.training import run

SMALL = [
    "dataset=multilabel",
    "dataset.n_samples=300",
    "dataset.val_size=60",
    "dataset.test_size=60",
    "dataset.batch_size=32",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
    "progress_bar=log",
]


def all_runs(store: Path) -> list:
    client = MlflowClient(sqlite_uri(store))
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def small_cfg(tmp: Path, *overrides: str):
    store = tmp / "mlflow.db"
    return compose_cfg([*SMALL, f"logger.tracking_uri={sqlite_uri(store)}", *overrides], tmp)


def test_non_finite_loss_stops_the_run_and_records_why(tmp_path: Path) -> None:
    cfg = small_cfg(tmp_path, "head=sigmoid", "loss=bce_logits", "optimizer.lr=1e20")
    with pytest.raises(NonFiniteLoss) as err:
        run.train(cfg)
    (failed,) = all_runs(tmp_path / "mlflow.db")
    assert failed.info.status == "FAILED"
    assert failed.data.tags["failed_at_step"] == str(err.value.step)
    assert "NaN or infinite" in failed.data.tags["failure"]
    client = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    artifacts = {a.path for a in client.list_artifacts(failed.info.run_id)}
    assert "traceback.txt" in artifacts and "loss_curves.png" not in artifacts
    assert all(v == v for v in failed.data.metrics.values())  # no NaN recorded


def test_an_exception_mid_run_ends_it_failed_with_the_error(tmp_path: Path) -> None:
    cfg = small_cfg(tmp_path, "head=sigmoid", "loss=bce", "checkpoint.monitor=val/nothing")
    with pytest.raises(Exception, match="val/nothing"):
        run.train(cfg)
    (failed,) = all_runs(tmp_path / "mlflow.db")
    assert failed.info.status == "FAILED" and "val/nothing" in failed.data.tags["failure"]


def test_same_config_and_seed_give_identical_histories_on_cpu(tmp_path: Path) -> None:
    client = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    histories = []
    for _ in range(2):
        run_id = run.train(small_cfg(tmp_path, "head=sigmoid", "loss=focal"))
        keys = [k for k in client.get_run(run_id).data.metrics if not k.startswith("time/")]
        histories.append(
            {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}
        )
    assert histories[0] == histories[1]
    assert len(histories[0]["train/loss"]) > 1


def test_sweep_survives_failures_lists_them_and_skips_finished_configs(
    tmp_path: Path, tiny_data
) -> None:
    args = ["head=sigmoid", "loss=bce_logits,nll", "optimizer.lr=1e20,0.001", *SMALL]
    first = run_train(tmp_path, tiny_data[0], *args, multirun=True)
    assert first.returncode == 1, first.stderr[-3000:]
    assert "jobs: 1 finished, 1 failed, 2 skipped" in first.stdout
    runs = all_runs(tmp_path / "mlflow.db")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]
    outcomes = [json.loads(p.read_text()) for p in (tmp_path / "multirun").glob("*/outcome.json")]
    assert sorted(o["status"] for o in outcomes) == ["FAILED", "FINISHED", "SKIPPED", "SKIPPED"]

    again = run_train(tmp_path, tiny_data[0], *args, "hydra.sweep.dir=" + str(tmp_path / "m2"),
                      multirun=True)  # fmt: skip
    assert again.returncode == 1
    assert "jobs: 0 finished, 1 failed, 3 skipped" in again.stdout
    assert "already has a FINISHED run" in again.stdout + again.stderr
    statuses = sorted(r.info.status for r in all_runs(tmp_path / "mlflow.db"))
    assert statuses == ["FAILED", "FAILED", "FINISHED"]  # the finished config was not re-run

    forced = run_train(tmp_path, tiny_data[0], *args, "rerun=true",
                       "hydra.sweep.dir=" + str(tmp_path / "m3"), multirun=True)  # fmt: skip
    assert "jobs: 1 finished, 1 failed, 2 skipped" in forced.stdout
    finished = [r for r in all_runs(tmp_path / "mlflow.db") if r.info.status == "FINISHED"]
    assert len(finished) == 2 and len({r.data.tags["config_hash"] for r in finished}) == 1


def test_unknown_name_exits_2_with_the_options(tmp_path: Path, tiny_data) -> None:
    proc = run_train(tmp_path, tiny_data[0], "loss=focall", *TINY_OVERRIDES)
    assert proc.returncode == 2
    assert "Could not find 'loss/focall'" in proc.stderr and "\tfocal\n" in proc.stderr
