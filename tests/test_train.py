"""The real train.py, end to end, into temp MLflow stores that are read back with MLflow."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import TINY_OVERRIDES, TINY_SIZES, run_train, sqlite_uri

METRICS = {
    "train/loss",
    "train/loss_epoch",
    "val/loss",
    "val/acc",
    "val/f1_macro",
    "val/f1_micro",
    "test/loss",
    "test/acc",
    "test/f1_macro",
    "test/f1_micro",
}


def runs_in(store: Path, experiment: str = "lossbench") -> list:
    client = MlflowClient(sqlite_uri(store))
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id])


def check(proc) -> None:
    assert proc.returncode == 0, f"train.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


@pytest.fixture(scope="module")
def per_dataset(tmp_path_factory, tiny_data):
    """One multirun over the datasets with sigmoid + bce_logits."""
    tmp = tmp_path_factory.mktemp("per_dataset")
    data_dir, _ = tiny_data
    proc = run_train(
        tmp,
        data_dir,
        "dataset=mnist,fashion_mnist,multilabel,mnist_multilabel",
        "head=sigmoid",
        "loss=bce_logits",
        *TINY_OVERRIDES,
        multirun=True,
    )
    check(proc)
    return tmp, proc


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "multilabel", "mnist_multilabel"])
def test_each_dataset_trains_and_is_recorded(per_dataset, dataset: str) -> None:
    tmp, _ = per_dataset
    runs = {r.info.run_name: r for r in runs_in(tmp / "mlflow.db")}
    run = runs[f"{dataset}-sigmoid-bce_logits-seed42"]
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert (tags["dataset"], tags["head"], tags["loss"], tags["seed"]) == (
        dataset,
        "sigmoid",
        "bce_logits",
        "42",
    )
    multilabel = {"val/hamming_acc", "test/hamming_acc", "val/map", "test/map"}
    want = METRICS | (multilabel if "multilabel" in dataset else set())
    assert want <= set(run.data.metrics)
    client = MlflowClient(sqlite_uri(tmp / "mlflow.db"))
    steps = client.get_metric_history(run.info.run_id, "train/loss")
    assert len({m.step for m in steps}) > 1
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 2  # one per epoch
    for value in run.data.metrics.values():
        assert value == value  # no NaN
    params = run.data.params
    assert params["dataset/name"] == dataset and params["loss/name"] == "bce_logits"
    assert params["trainer/max_epochs"] == "2" and params["seed"] == "42"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    if "multilabel" in dataset:
        assert artifacts == {"config.yaml", "loss_curves.png", "weights.pt", "predictor.json",
                             "reliability.json"}  # fmt: skip
    else:  # the test split's confusion matrix: its diagonal is test/acc
        assert artifacts == {"config.yaml", "loss_curves.png", "confusion_matrix.json",
                             "weights.pt", "predictor.json", "reliability.json"}  # fmt: skip
        confusion = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/confusion_matrix.json")
        matrix = np.array(confusion["matrix"])
        assert matrix.shape == (10, 10) and matrix.sum() == TINY_SIZES["test"]
        assert np.isclose(np.trace(matrix) / matrix.sum(), run.data.metrics["test/acc"])
        assert len(confusion["labels"]) == 10
    png = Path(client.download_artifacts(run.info.run_id, "loss_curves.png", str(tmp)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_shares_one_store_and_sweep_id(per_dataset) -> None:
    tmp, proc = per_dataset
    runs = runs_in(tmp / "mlflow.db")
    assert len(runs) == 4
    assert len({r.data.tags["sweep_id"] for r in runs}) == 1
    assert "4 runs in experiment 'lossbench'" in proc.stdout  # the closing summary table


def test_readme_example_runs_as_written(tmp_path: Path, tiny_data) -> None:
    data_dir, _ = tiny_data
    proc = run_train(tmp_path, data_dir, "loss=bce", "head=sigmoid", *TINY_OVERRIDES)
    check(proc)
    (run,) = runs_in(tmp_path / "mlflow.db")
    assert run.info.run_name == "mnist-sigmoid-bce-seed42"
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/acc"] > 0.2  # label-dependent brightness is learnable
    assert "test metrics, run mnist-sigmoid-bce-seed42" in proc.stdout


def test_two_pair_multirun_runs_valid_pairs_only(tmp_path: Path, tiny_data) -> None:
    data_dir, _ = tiny_data
    proc = run_train(
        tmp_path,
        data_dir,
        "head=softmax,sigmoid",
        "loss=ce,bce_logits",
        *TINY_OVERRIDES,
        multirun=True,
    )
    check(proc)
    runs = runs_in(tmp_path / "mlflow.db")
    assert sorted(r.info.run_name for r in runs) == [
        "mnist-sigmoid-bce_logits-seed42",
        "mnist-softmax-ce-seed42",
    ]
    assert all(r.info.status == "FINISHED" for r in runs)
    log = proc.stdout + proc.stderr
    # each skipped job's log line, and the sweep's closing list by the job's own overrides
    assert log.count("skipped: head=softmax cannot be trained with loss=bce_logits") == 1
    assert log.count("skipped: head=sigmoid cannot be trained with loss=ce") == 1
    assert "  skipped: head=softmax loss=bce_logits: head=softmax cannot" in proc.stdout
    assert "  skipped: head=sigmoid loss=ce: head=sigmoid cannot" in proc.stdout


def test_invalid_pair_exits_with_the_message_and_no_run(tmp_path: Path, tiny_data) -> None:
    data_dir, _ = tiny_data
    proc = run_train(tmp_path, data_dir, "head=sigmoid", "loss=nll", *TINY_OVERRIDES)
    assert proc.returncode == 2
    assert "Valid losses for head=sigmoid on a multiclass dataset: bce, bce_logits" in proc.stderr
    assert runs_in(tmp_path / "mlflow.db") == []


def test_runs_record_their_process_and_logs_hold_no_framework_tips(per_dataset) -> None:
    import socket

    tmp, proc = per_dataset
    for run in runs_in(tmp / "mlflow.db"):
        tags = run.data.tags
        assert tags["host"] == socket.gethostname() and tags["pid"].isdigit()
        assert Path(tags["output_dir"], "checkpoints", "last.ckpt").is_file()
    log = proc.stdout + proc.stderr
    assert "Tip" not in log and "litlogger" not in log  # Lightning's product tips
    assert "Total params" not in log  # the model summary: trainer.enable_model_summary=true
