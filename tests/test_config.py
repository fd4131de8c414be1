"""The Hydra config, composed in-process: defaults, absolute paths, names = registries."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT, sqlite_uri
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf, open_dict

from lossbench import run
from lossbench.data import DATASETS
from lossbench.errors import LossbenchError
from lossbench.heads import HEADS
from lossbench.losses import LOSSES
from lossbench.models import MODELS
from lossbench.tracking import resolve_tracking_uri

CONF = ROOT / "conf"


def compose_cfg(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """The config train.py would get, with HydraConfig set as in a real run."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir or ROOT / "outputs" / "compose")
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # a task function gets the job config alone
    return cfg


def test_defaults() -> None:
    cfg = compose_cfg([])
    assert (cfg.dataset.name, cfg.model.name, cfg.head.name, cfg.loss.name) == (
        "mnist",
        "mlp",
        "softmax",
        "ce",
    )
    assert cfg.trainer.accelerator == "auto"
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr > 0


def test_store_and_data_paths_are_absolute_at_the_project_root() -> None:
    cfg = compose_cfg([])
    assert cfg.logger.tracking_uri == f"sqlite:///{ROOT}/mlflow.db"
    assert Path(cfg.data_dir) == ROOT / "data" and Path(cfg.data_dir).is_absolute()
    hydra = HydraConfig.get()
    assert Path(hydra.sweep.dir).is_absolute() and Path(hydra.run.dir).is_absolute()


def test_relative_sqlite_uri_is_made_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri("sqlite:///runs/x.db") == f"sqlite:///{tmp_path}/runs/x.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


@pytest.mark.parametrize(
    ("group", "registry"),
    [("dataset", DATASETS), ("head", HEADS), ("loss", LOSSES), ("model", MODELS)],
)
def test_every_option_is_registered_and_every_name_has_a_config(group, registry) -> None:
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert options == sorted(registry.names())
    for name in options:
        assert OmegaConf.load(CONF / group / f"{name}.yaml").name == name


def test_quickstart_experiment_composes() -> None:
    cfg = compose_cfg(["+experiment=quickstart"])
    assert (cfg.dataset.name, cfg.model.name) == ("fashion_mnist", "cnn")
    assert HydraConfig.get().sweeper.params == {"head": "softmax,sigmoid", "loss": "ce,bce_logits"}


def test_refused_model_leaves_no_run(tmp_path: Path) -> None:
    store = tmp_path / "mlflow.db"
    cfg = compose_cfg(
        [
            "dataset=multilabel",
            "model=cnn",
            "head=sigmoid",
            "loss=bce",
            f"logger.tracking_uri={sqlite_uri(store)}",
        ],
        tmp_path,
    )
    with pytest.raises(LossbenchError, match="model=cnn needs image inputs.*use `model=mlp`"):
        run.train(cfg)
    assert not store.exists() or MlflowClient(sqlite_uri(store)).search_runs(["0"]) == []


def test_in_process_run_records_metrics(tmp_path: Path) -> None:
    """One tiny multi-label run through run.train, in-process (no 10 s start-up)."""
    store = tmp_path / "mlflow.db"
    cfg = compose_cfg(
        [
            "dataset=multilabel",
            "head=sigmoid",
            "loss=bce",
            "dataset.n_samples=400",
            "dataset.val_size=100",
            "dataset.test_size=100",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "trainer.log_every_n_steps=1",
            "progress_bar=log",
            f"logger.tracking_uri={sqlite_uri(store)}",
        ],
        tmp_path,
    )
    run_id = run.train(cfg)
    got = MlflowClient(sqlite_uri(store)).get_run(run_id)
    assert got.info.status == "FINISHED"
    assert {"test/acc", "test/hamming_acc", "test/f1_macro", "val/hamming_acc"} <= set(
        got.data.metrics
    )
    assert 0.0 <= got.data.metrics["test/acc"] <= got.data.metrics["test/hamming_acc"] <= 1.0
    assert (tmp_path / "checkpoints").is_dir()
