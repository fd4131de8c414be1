"""The Hydra config, composed in-process: defaults, absolute paths, names = registries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from mlflow.tracking import MlflowClient

from conftest import ROOT, compose_cfg, sqlite_uri
from lossbench.config import CONF
from lossbench.data import DATASETS
from lossbench.errors import LossbenchError
from lossbench.heads import HEADS
from lossbench.losses import LOSSES
from lossbench.models import MODELS
from lossbench.tracking.store import resolve_tracking_uri
from lossbench.training import run


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
    assert options == sorted([*registry.names(), *registry.aliases()])
    for option in options:
        cfg = compose_cfg([f"{group}={option}"])
        assert cfg[group].name == registry.canonical(option)


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
    """One tiny multi-label run through run.train, in-process (no 10 s start-up), with the
    softmax head's default per-class thresholds tuned on the validation split."""
    store = tmp_path / "mlflow.db"
    cfg = compose_cfg(
        [
            "dataset=multilabel",
            "head=softmax",
            "loss=ce_onehot",
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
    metrics = set(got.data.metrics)
    assert {"test/acc", "test/hamming_acc", "test/f1_macro", "val/map", "test/map"} <= metrics
    assert 0.0 <= got.data.metrics["test/acc"] <= got.data.metrics["test/hamming_acc"] <= 1.0
    assert (tmp_path / "checkpoints").is_dir()
    client = MlflowClient(sqlite_uri(store))
    path = client.download_artifacts(run_id, "thresholds.json", str(tmp_path))
    thresholds = json.loads(Path(path).read_text())["thresholds"]
    assert len(thresholds) == cfg.dataset.n_classes
    assert all(0.0 < t <= 1.0 for t in thresholds) and len(set(thresholds)) > 1


@pytest.mark.parametrize(
    ("study", "task"), [("multiclass_grid", "multiclass"), ("multilabel_grid", "multilabel")]
)
def test_study_grids_cover_every_valid_pair(study: str, task: str) -> None:
    from lossbench import matrix

    compose_cfg([f"+experiment={study}"])
    params = HydraConfig.get().sweeper.params
    grid = {(h, loss) for h in params["head"].split(",") for loss in params["loss"].split(",")}
    valid = {(h, loss) for t, h, loss, ok in matrix.table() if ok and t == task}
    assert valid <= grid
    assert len(params["seed"].split(",")) >= 3


def test_help_starts_with_lossbench_and_its_choices() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("lossbench: which output head and which loss")
    assert "    loss:      asl, bce, bce_logits" in proc.stdout
    assert "trainer:\n  _target_: pytorch_lightning.Trainer" in proc.stdout  # the config
    assert "schema/" not in proc.stdout


def test_help_page_is_current() -> None:
    from lossbench.docs import HELP, help_page

    assert HELP.read_text() == help_page(), "run `make docs`"


# One key per group, given a value of the wrong type: refused when Hydra composes.
WRONG_TYPES = {
    "dataset": "dataset.batch_size=many",
    "model": "model.dropout=high",
    "head": "head.name=[1,2]",
    "loss": "loss.label_smoothing=some",
    "optimizer": "optimizer.lr=fast",
    "trainer": "trainer.max_epochs=ten",
    "logger": "logger.experiment_name=[a,b]",
    "checkpoint": "checkpoint.save_top_k=all",
    "run": "seed=abc",
}


@pytest.mark.parametrize("group", list(WRONG_TYPES))
def test_every_group_is_typed(group: str) -> None:
    from omegaconf import OmegaConf

    from lossbench.errors import user_message

    with pytest.raises(Exception) as err:
        compose_cfg([WRONG_TYPES[group]])
    message = user_message(err.value)
    assert message is not None and "error in the config or overrides" in message, err.value
    cfg = compose_cfg([])
    node = cfg if group == "run" else cfg[group]
    assert OmegaConf.get_type(node).__name__.endswith("Config"), OmegaConf.get_type(node)


def accepted(cls, skip: set[str]) -> set[str]:
    """The keyword parameters ``cls`` takes, following ``**kwargs`` to where they are passed."""
    import inspect

    from lossbench.schemas import _passes_to

    params = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls).parameters
    names = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        names |= accepted(_passes_to(cls), skip)
    return names - {"self", *skip}


@pytest.mark.parametrize(
    ("group", "registry", "skip"),
    [("dataset", DATASETS, {"data_dir", "shuffle_seed"}), ("model", MODELS,
     {"input_shape", "num_classes"}), ("loss", LOSSES, set()), ("head", HEADS, set())],
)  # fmt: skip
def test_each_option_takes_exactly_its_class_parameters(group, registry, skip) -> None:
    """The config keys of every option are its class's parameters (a loss's parameter is a
    key at once; a key that the class does not take cannot be composed)."""
    for name in registry:
        keys = set(compose_cfg([f"{group}={name}"])[group]) - {"name", "noise", "imbalance"}
        assert keys == accepted(registry[name], skip), name


def test_split_check_trains_side_by_side_and_its_split_can_follow_the_seed() -> None:
    cfg = compose_cfg(["+experiment=split_check", "dataset.split_seed=${seed}", "seed=3"])
    assert cfg.dataset.split_seed == 3 and cfg.dataset.name == "digits"
    assert HydraConfig.get().launcher._target_.endswith("FusedLauncher")


@pytest.mark.parametrize("study", ["noise_grid", "imbalance_grid"])
def test_stress_studies_compose(study: str) -> None:
    cfg = compose_cfg([f"+experiment={study}"])
    params = HydraConfig.get().sweeper.params
    if study == "noise_grid":
        assert cfg.test_on == "last" and params["dataset.noise.rate"] == "0.0,0.4,0.8"
    else:
        assert cfg.dataset.imbalance.factor == 100
        assert params["loss.class_weight"] == "none,effective_number"


def test_early_stopping_off_leaves_the_config_hash_as_before(tmp_path: Path) -> None:
    """Runs recorded before ``early_stopping`` existed keep matching their configs (a sweep
    skips them), as long as it is off; on, it is part of what the run computes."""
    from omegaconf import OmegaConf

    from lossbench.tracking.mlflow_run import config_hash

    def hashed(*overrides: str) -> tuple[str, dict]:
        resolved = OmegaConf.to_container(compose_cfg(["dataset=digits", *overrides], tmp_path),
                                          resolve=True)  # fmt: skip
        return config_hash(resolved), resolved

    off, resolved = hashed()
    assert resolved["early_stopping"]["patience"] is None
    before = {k: v for k, v in resolved.items() if k != "early_stopping"}
    assert config_hash(before) == off
    on, _ = hashed("early_stopping.patience=3")
    assert on != off and hashed("early_stopping.patience=3")[0] == on
