"""Every bad input of the README's table: one message naming the problem and the fix, exit code 2,
and nothing written to the store (no run; no store where there was none)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, compose_cfg, run_train, sqlite_uri, tiny_arrays, write_idx_dir
from lossbench.data.idx import IDX_FILES
from lossbench.errors import LossbenchError, user_message
from lossbench.training import run

MULTILABEL = ["dataset=multilabel", "head=sigmoid", "loss=bce"]
OFFLINE = ["dataset.download=false", "dataset.val_size=56"]


def idx_dir(
    tmp: Path,
    change: Callable[[dict], None] | None = None,
    corrupt: Callable[[bytes], bytes] | None = None,
) -> Path:
    """A data_dir whose MNIST/raw files are tiny IDX files: the arrays changed by ``change``,
    or the image files' bytes by ``corrupt``."""
    folder = tmp / "data" / "MNIST" / "raw"
    arrays = tiny_arrays(0)
    if change:
        change(arrays)
    write_idx_dir(folder, arrays)
    for name, (_, is_images) in IDX_FILES.items():
        if corrupt and is_images:
            (folder / name).write_bytes(corrupt((folder / name).read_bytes()))
    return tmp / "data"


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def random_bytes(data: bytes) -> bytes:
    return np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes()


def wrong_label(arrays: dict) -> None:
    arrays["train"][1][7] = 12


def fewer_labels(arrays: dict) -> None:
    images, labels = arrays["test"]
    arrays["test"] = (images, labels[:-5])


def no_data(_: object) -> list[str]:
    """A set-up made only for its side effect: the run gets an empty data_dir."""
    return []


def data_dir(folder: Path) -> list[str]:
    return [f"data_dir={folder}"]


def folder_without_train(tmp: Path) -> list[str]:
    (tmp / "images" / "val" / "cat").mkdir(parents=True)
    return ["dataset=image_folder", f"dataset.root={tmp / 'images'}"]


def folder_of_one_class(tmp: Path) -> list[str]:
    """A split folder misnamed (``training/``) is taken as the one class folder of the root."""
    from PIL import Image

    (tmp / "images" / "training" / "cat").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp / "images" / "training" / "cat" / "0.png")
    return ["dataset=image_folder", f"dataset.root={tmp / 'images'}", "dataset.image_size=8"]


def table_file(tmp: Path, **columns: list) -> Path:
    import pandas as pd

    pd.DataFrame(columns).to_csv(tmp / "t.csv", index=False)
    return tmp / "t.csv"


def unknown_label_column(tmp: Path) -> list[str]:
    path = table_file(tmp, x=[1.0, 2.0, 3.0, 4.0, 5.0], y=[0, 1, 0, 1, 0])
    return ["dataset=table", f"dataset.path={path}", "dataset.label_column=label"]


def numbers_and_text(tmp: Path) -> list[str]:
    path = table_file(tmp, x=["1.5", "2", "1,5", "4"] * 5, y=[0, 1] * 10)
    return ["dataset=table", f"dataset.path={path}", "dataset.label_column=y"]


def empty_text_cell(tmp: Path) -> list[str]:
    path = table_file(tmp, x=[1.0, 2.0, 3.0, 4.0] * 5, c=["a", "b", None, "a"] * 5, y=[0, 1] * 10)
    return ["dataset=table", f"dataset.path={path}", "dataset.label_column=y"]


def empty_column(tmp: Path) -> list[str]:
    path = table_file(tmp, x=[1.0, 2.0] * 10, gone=[None] * 20, y=[0, 1] * 10)
    return ["dataset=table", f"dataset.path={path}", "dataset.label_column=y",
            "dataset.missing=impute"]  # fmt: skip


def id_column(tmp: Path) -> list[str]:
    path = table_file(tmp, x=[1.0] * 300, name=[f"id{i}" for i in range(300)], y=[0, 1] * 150)
    return ["dataset=table", f"dataset.path={path}", "dataset.label_column=y"]


def unlabelled_row(tmp: Path) -> list[str]:
    path = table_file(tmp, x=[float(i) for i in range(20)], y=["a", "b", None, "a"] * 5)
    return ["dataset=table", f"dataset.path={path}", "dataset.label_column=y"]


def one_class(tmp: Path) -> list[str]:
    path = table_file(tmp, x=[float(i) for i in range(20)], y=[7] * 20)
    return ["dataset=table", f"dataset.path={path}", "dataset.label_column=y"]


def manifest_with_a_missing_image(tmp: Path) -> list[str]:
    (tmp / "m.csv").write_text("path,labels\nimages/gone.png,cat\n")
    return ["dataset=image_csv", f"dataset.csv={tmp / 'm.csv'}"]


def a_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("a file where a folder should be")
    return path


# README row → (overrides, words the message must hold, set-up of the temp dir: returns more
# overrides). Rows of the compose stage fail when Hydra composes the config.
RUN_STAGE: dict[str, tuple[list[str], str, Callable[[Path], list[str]] | None]] = {
    "invalid head/loss pair": (["head=sigmoid", "loss=nll"], "Valid losses for head=sigmoid", None),
    "unknown parameter added with `+`": (
        ["+optimizer.foo=1"], "torch.optim.adam.Adam takes no parameter 'foo'; it takes: lr, betas",
        None),
    "optimizer.lr <= 0": (["optimizer.lr=0"], r"optimizer.lr=0.0 is out of range: it must be > 0",
                          None),
    "optimizer value torch refuses": ([*MULTILABEL, "optimizer.betas=[1.5,0.9]"],
                                      "refused the optimizer config: Invalid beta", None),
    "batch size 0": (["dataset.batch_size=0"], "dataset.batch_size=0", None),
    "n_classes < 2": ([*MULTILABEL, "dataset.n_classes=1"], "at least 2 classes", None),
    "n_labels > n_classes": ([*MULTILABEL, "dataset.n_labels=12"],
                             r"dataset.n_labels=12 is out of range: it must be >= 1 and <= 10",
                             None),
    "loss parameter out of range": ([*MULTILABEL[:2], "loss=focal", "loss.gamma=-1"],
                                    r"loss.gamma=-1.0 is out of range: it must be >= 0", None),
    "model parameter out of range": ([*MULTILABEL, "model.dropout=1.5"],
                                     r"model.dropout=1.5 is out of range: it must be >= 0 and < 1",
                                     None),
    "epochs < 1": (["trainer.max_epochs=0"], r"trainer.max_epochs=0 is out of range", None),
    "seed < 0": (["seed=-1"], r"seed=-1 is out of range: it must be >= 0", None),
    "data missing offline": (OFFLINE, "dataset files are missing", None),
    "truncated IDX file": (OFFLINE, "truncated or corrupt",
                           lambda t: data_dir(idx_dir(t, corrupt=truncated))),
    "random bytes in an IDX file": (OFFLINE, "truncated or corrupt",
                                    lambda t: data_dir(idx_dir(t, corrupt=random_bytes))),
    "label outside the classes": (OFFLINE,
                                  "disagree: label 12 is not one of the classes 0..9",
                                  lambda t: data_dir(idx_dir(t, wrong_label))),
    "image and label counts disagree": (OFFLINE,
                                        "disagree: 64 images but 59 labels",
                                        lambda t: data_dir(idx_dir(t, fewer_labels))),
    "unwritable data_dir": ([], "the data folder .* is not writable",
                            lambda t: data_dir(a_file(t / "data-file"))),
    "unwritable store": ([], "is not writable", lambda t: no_data(a_file(t / "store"))),
    "store is not a database": ([], "is not an SQLite database",
                                lambda t: no_data(a_file(t / "store" / "mlflow.db"))),
    "unreachable server": (["logger.tracking_uri=http://127.0.0.1:9"], "cannot be reached", None),
    "bad threshold": ([*MULTILABEL, "head.threshold=2"], "neither a probability", None),
    "bad `head.binary_outputs`": ([*MULTILABEL, "head.binary_outputs=3"],
                                  r"head.binary_outputs=3 is neither 1 .* nor 2", None),
    "`loss.pos_weight` of another length than the outputs": (
        [*MULTILABEL[:2], "loss=bce_logits", "loss.pos_weight=[1.0,2.0]"],
        r"loss.pos_weight has 2 values, but the sigmoid head has \d+ outputs here", None),
    "bad Trainer value": ([*MULTILABEL, "trainer.precision=77"], "Trainer refused", None),
    "optimized metric not monitored": (["optimized_metric=val/f1_macro_best"],
                                       "set `checkpoint.monitor=val/f1_macro`", None),
    "early stopping of no patience": (["early_stopping.patience=0"],
                                      r"early_stopping.patience=0 is out of range", None),
    "unknown early_stopping.mode": (["early_stopping.patience=2", "early_stopping.mode=up"],
                                    r"early_stopping.mode='up' is not one of min, max", None),
    "image folder with val/ but no train/": ([], "has val/ but no train/ folder",
                                             folder_without_train),
    "image folder of one class": ([], r"images/ has images of one class only \(training\): a "
                                  "classifier needs at least 2", folder_of_one_class),
    "unknown label column": ([], "has no column 'label'; its columns: x, y", unknown_label_column),
    "feature column of numbers and text": ([], "feature column 'x' holds numbers and text such "
                                           "as '1,5'", numbers_and_text),
    "table feature cell empty": ([], r"t.csv: row 3, column 'c' is empty or NaN",
                                 empty_text_cell),
    "table feature column empty in every training row": ([], r"t.csv: feature column 'gone' is "
                                                         "empty in every training row",
                                                         empty_column),
    "unknown dataset.missing": (["dataset.missing=drop"], r"dataset.missing='drop' is not one of "
                                "refuse, impute", empty_text_cell),
    "text feature column of over 100 values": ([], r"text feature column 'name' has 2\d\d "
                                               "distinct values in the training split", id_column),
    "table row without a label": ([], r"t.csv: row 3, label column 'y' is empty", unlabelled_row),
    "table label column of one class": ([], r"label column 'y' holds one value \(7\): a "
                                        "classifier needs at least 2 classes", one_class),
    "CSV row naming a missing image": ([], r"m.csv, line 2: the image .*gone.png does not exist",
                                       manifest_with_a_missing_image),
    "any other error before the run opens": ([*MULTILABEL, "checkpoint.mode=sideways"],
                                             "the run could not be set up: .*sideways", None),
}  # fmt: skip

COMPOSE_STAGE: dict[str, tuple[list[str], str]] = {
    "unknown dataset/head/loss/model name": (["loss=focall"], "Could not find 'loss/focall'"),
    "value of the wrong type": (["optimizer.lr=abc"], "'abc' of type 'str' could not be converted"),
    "unknown key": (["loss=focal", "loss.foo=1"],
                    "SigmoidFocal takes no parameter 'foo'; it takes: gamma, alpha"),
}  # fmt: skip

# README rows tested elsewhere, by the test that does
ELSEWHERE = {
    "unwritable output folder": "test_unwritable_output_folder_exits_2",
    "`resume=` a run that is not KILLED": "tests/test_resume.py",
    "`resume=` a checkpoint outside the output folders": "tests/test_resume.py",
    "unknown store, experiment or sweep (summary, report, ui)": "tests/test_read_commands.py",
    "bad or unreachable `tune.storage`": "tests/test_tune.py",
    # and tests/test_tune.py, before any training
    "`--metric` a score the report cannot rank by, or one the runs did not record (report, tune)": (
        "tests/test_report.py"
    ),
    "`lossbench.studies.tune` given two trial counts, or a bad one": "tests/test_tune.py",
    "`hydra/launcher=slurm` or `hydra/sweeper=lr_search` without its Hydra plugin installed": (
        "test_a_plugins_choice_without_the_plugin_is_refused_and_discovery_stays_quiet"
    ),
}


def runs_in(store: Path) -> list:
    client = MlflowClient(sqlite_uri(store))
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


@pytest.mark.parametrize("case", list(RUN_STAGE))
def test_refused_before_the_run_opens(case: str, tmp_path: Path) -> None:
    overrides, words, setup = RUN_STAGE[case]
    store = tmp_path / "store" / "mlflow.db"
    extra = setup(tmp_path) if setup else []
    existed = store.exists()
    cfg = compose_cfg(
        [f"data_dir={tmp_path / 'empty-data'}", f"logger.tracking_uri={sqlite_uri(store)}",
         *overrides, *extra], tmp_path,
    )  # fmt: skip
    with pytest.raises(LossbenchError) as err:
        run.train(cfg)
    message = str(err.value)
    assert re.search(words, message), message
    assert err.value.exit_code == 2
    assert "\n" not in message.split("Expected:")[0]  # one message (files listed after)
    assert "Fix:" in message or "fix" in message.lower() or "set " in message, message
    if not existed:
        assert not store.exists(), "a refused run created the store"
    elif store.stat().st_size and case != "store is not a database":
        assert runs_in(store) == []


@pytest.mark.parametrize("case", list(COMPOSE_STAGE))
def test_refused_when_the_config_is_composed(case: str) -> None:
    overrides, words = COMPOSE_STAGE[case]
    with pytest.raises(Exception) as err:
        compose_cfg(overrides)
    message = user_message(err.value)
    assert message is not None and words in message, message
    assert "Fix:" in message


def test_train_py_exits_2_with_one_message_and_a_traceback_only_when_asked(
    tmp_path: Path, tiny_data
) -> None:
    quiet = run_train(tmp_path, tiny_data[0], "+loss.foo=1")
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines()[-1].startswith("lossbench: error: loss.foo:")
    assert "Traceback" not in quiet.stderr and "Error executing job" not in quiet.stderr
    typed = run_train(tmp_path, tiny_data[0], "dataset.batch_size=abc")
    assert typed.returncode == 2 and "Traceback" not in typed.stderr
    assert "could not be converted to Integer" in typed.stderr
    swept = run_train(tmp_path, tiny_data[0], "dataset.batch_size=32,abc", multirun=True)
    assert swept.returncode == 2 and "Traceback" not in swept.stderr  # and no store (below)
    assert "dataset.batch_size=abc" in swept.stderr.strip().splitlines()[-2]
    loud = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "trainer.max_epochs=0",
         f"logger.tracking_uri={sqlite_uri(tmp_path / 'mlflow.db')}",
         f"hydra.run.dir={tmp_path / 'out'}"],
        capture_output=True, text=True, env={**os.environ, "HYDRA_FULL_ERROR": "1"},
    )  # fmt: skip
    assert loud.returncode == 2 and "Traceback" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1].startswith("lossbench: error: trainer.max_epochs")
    assert not (tmp_path / "mlflow.db").exists()


def test_unwritable_output_folder_exits_2(tmp_path: Path, tiny_data) -> None:
    a_file(tmp_path / "blocked")
    proc = run_train(tmp_path, tiny_data[0], f"hydra.run.dir={tmp_path / 'blocked' / 'run'}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "the output folder (hydra.run.dir)" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


# train.py where a Hydra plugin cannot be imported (None in sys.modules: ImportError)
NO_PLUGIN = """
import runpy, sys, warnings
sys.modules[PLUGIN] = None
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    from hydra.core.plugins import Plugins
    Plugins.instance()  # discovers every plugin module, lossbench's Slurm launcher among them
print("discovery warnings:", [str(w.message) for w in seen if "lossbench_slurm" in str(w.message)])
sys.argv = [TRAIN, *sys.argv[1:]]
runpy.run_path(TRAIN, run_name="__main__")
"""


@pytest.mark.parametrize(
    ("plugin", "choice", "config", "package"),
    [
        ("hydra_submitit_launcher", "hydra/launcher=slurm", "hydra/launcher/submitit_slurm",
         "hydra-submitit-launcher"),
        ("hydra_optuna_sweeper", "hydra/sweeper=lr_search", "hydra/sweeper/optuna",
         "hydra-optuna-sweeper"),
    ],
    ids=["slurm", "lr_search"],
)  # fmt: skip
def test_a_plugins_choice_without_the_plugin_is_refused_and_discovery_stays_quiet(
    plugin: str, choice: str, config: str, package: str, tmp_path: Path, tiny_data
) -> None:
    """A trimmed install (the GPU machines' carried wheels) lacks hydra-submitit-launcher:
    Hydra warned at every start that lossbench's Slurm plugin failed to import; now it does
    not, and ``hydra/launcher=slurm`` (whose config builds on the plugin's) says what to
    install, exit 2, no store. The same for ``hydra/sweeper=lr_search`` and Optuna's."""
    code = NO_PLUGIN.replace("TRAIN", repr(str(ROOT / "train.py")))
    code = code.replace("PLUGIN", repr(f"hydra_plugins.{plugin}"))
    proc = subprocess.run(
        [sys.executable, "-c", code, "-m", f"data_dir={tiny_data[0]}", choice,
         f"logger.tracking_uri={sqlite_uri(tmp_path / 'mlflow.db')}",
         f"hydra.sweep.dir={tmp_path / 'multirun'}", "seed=1,2"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert "discovery warnings: []" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert proc.returncode == 2, proc.stderr[-2000:]
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith(f"lossbench: error: {choice} needs {package}, which is not "
                              "installed here")  # fmt: skip
    assert f"Could not load '{config}'" in message
    assert message.endswith(f"Fix: `pip install '{package}>=1.2'` (a dependency of lossbench: "
                            f"`make setup` installs it), or drop {choice}")  # fmt: skip
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()


def readme_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("<!-- bad-input:start -->")[1].split("<!-- bad-input:end -->")[0]
    rows = [line.split("|")[1].strip() for line in table.strip().splitlines()[2:]]
    return rows


def test_readme_table_lists_exactly_the_tested_rows() -> None:
    assert sorted(readme_rows()) == sorted([*RUN_STAGE, *COMPOSE_STAGE, *ELSEWHERE])
    here = Path(__file__).read_text()
    for where in ELSEWHERE.values():
        assert f"def {where}(" in here if where.startswith("test_") else (ROOT / where).is_file()
