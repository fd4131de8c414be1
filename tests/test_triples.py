"""Every valid (task, head, loss) triple trains a few steps in-process; every invalid one is
refused before an MLflow run exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY_VAL_SIZE, compose_cfg, sqlite_uri
from lossbench import matrix
from lossbench.errors import InvalidPair
from lossbench.training import run

DATASET = {
    "multiclass": ["dataset=mnist", f"dataset.val_size={TINY_VAL_SIZE}"],
    "multilabel": [
        "dataset=multilabel",
        "dataset.n_samples=300",
        "dataset.val_size=60",
        "dataset.test_size=60",
    ],
}
FEW_STEPS = [
    "dataset.batch_size=32",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
    "progress_bar=log",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("triples") / "mlflow.db"


def cfg_for(task, head, loss, store: Path, data_dir: Path, out: Path):
    return compose_cfg(
        [
            *DATASET[task],
            f"head={head}",
            f"loss={loss}",
            *FEW_STEPS,
            f"data_dir={data_dir}",
            f"logger.tracking_uri={sqlite_uri(store)}",
            "logger.experiment_name=triples",
        ],
        out,
    )


@pytest.mark.parametrize(
    ("task", "head", "loss"), [(t, h, loss) for t, h, loss, ok in matrix.table() if ok]
)
def test_valid_triple_trains(task, head, loss, store, tiny_data, tmp_path) -> None:
    run_id = run.train(cfg_for(task, head, loss, store, tiny_data[0], tmp_path))
    got = MlflowClient(sqlite_uri(store)).get_run(run_id)
    assert got.info.status == "FINISHED"
    metrics = got.data.metrics
    assert all(v == v for v in metrics.values())  # no NaN
    assert {"train/loss", "val/loss", "test/acc", "test/f1_macro"} <= set(metrics)
    if task == "multilabel":
        assert {"val/map", "test/map", "test/hamming_acc"} <= set(metrics)


@pytest.mark.parametrize(
    ("task", "head", "loss"), [(t, h, loss) for t, h, loss, ok in matrix.table() if not ok]
)
def test_invalid_triple_is_refused_before_a_run(task, head, loss, tiny_data, tmp_path) -> None:
    store = tmp_path / "mlflow.db"
    with pytest.raises(InvalidPair, match=f"Valid losses for head={head} on a {task}"):
        run.train(cfg_for(task, head, loss, store, tiny_data[0], tmp_path))
    assert not store.exists()
