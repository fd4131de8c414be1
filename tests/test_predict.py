"""lossbench.predict on real runs: a folder of images, a CSV of images, a table; the outputs
equal the trained model's own test predictions; a run without weights is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image
from sklearn.datasets import load_digits

from conftest import compose_cfg, sqlite_uri
from lossbench import predict
from lossbench.data import make_datamodule
from lossbench.errors import LossbenchError
from lossbench.training import run

DIGITS = ["dataset=digits", "model=cnn", "trainer.max_epochs=3", "trainer.accelerator=cpu",
          "progress_bar=log"]  # fmt: skip


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("predict")
    uri = sqlite_uri(tmp / "mlflow.db")
    return tmp, run.train(compose_cfg([*DIGITS, f"logger.tracking_uri={uri}"], tmp / "run"))


def write_digit_pngs(folder: Path, n: int) -> list[int]:
    digits = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = np.round(digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return digits.target[:n].tolist()


def test_a_folder_of_images_gets_the_models_own_predictions(digits_run, tmp_path: Path) -> None:
    store, run_id = digits_run
    labels = write_digit_pngs(tmp_path / "pngs", 40)
    out = tmp_path / "pred.csv"
    predict.main(["--tracking-uri", sqlite_uri(store / "mlflow.db"), "--run", run_id,
                  "--input", str(tmp_path / "pngs"), "--out", str(out)])  # fmt: skip
    table = pd.read_csv(out)
    assert list(table.columns) == ["input", "prediction", *(f"p_{c}" for c in range(10))]
    np.testing.assert_allclose(table.filter(like="p_").sum(axis=1), 1, atol=1e-5)
    assert (table["prediction"] == table.filter(like="p_").to_numpy().argmax(1)).all()
    assert (table["prediction"].to_numpy() == np.array(labels)).mean() > 0.8
    # the same images through the run's own data path and weights give the same probabilities
    spec, model = predict.load_run(sqlite_uri(store / "mlflow.db"), run_id)
    data = make_datamodule("digits", tmp_path, batch_size=64)
    data.setup()
    digits = torch.from_numpy(np.round(load_digits().images[:40] * 255 / 16).astype(np.uint8))
    x, _ = data.on_after_batch_transfer([digits[:, None], torch.zeros(40)], 0)
    probs = torch.softmax(model(x), -1).detach().numpy()
    np.testing.assert_allclose(table.filter(like="p_").to_numpy(), probs, atol=1e-5)
    assert spec["classes"] == [str(c) for c in range(10)]


def test_a_table_run_predicts_from_a_csv(tmp_path: Path) -> None:
    """A table with a text column (one-hot encoded): predict encodes a new CSV exactly as the
    training encoded the test split (same inputs to the model), and a category it never saw is
    all zeros, not an error."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 200)
    shade = np.where(rng.random(200) < 0.8, np.where(label == 1, "dark", "light"), "pale")
    frame = pd.DataFrame({"u": rng.normal(size=200) + 3 * label, "shade": shade,
                          "v": rng.normal(size=200), "kind": np.where(label == 1, "yes", "no"),
                          "split": ["test"] * 50 + ["train"] * 150})  # fmt: skip
    frame.to_csv(tmp_path / "t.csv", index=False)
    uri = sqlite_uri(tmp_path / "mlflow.db")
    run_id = run.train(compose_cfg([
        "dataset=table", f"dataset.path={tmp_path / 't.csv'}", "dataset.label_column=kind",
        "trainer.max_epochs=5", "trainer.accelerator=cpu", "progress_bar=log",
        f"logger.tracking_uri={uri}"], tmp_path / "run"))  # fmt: skip
    new = frame.drop(columns=["kind", "split"]).head(50)
    new.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "pred.csv"
    predict.main(["--tracking-uri", uri, "--run", run_id, "--input", str(tmp_path / "new.csv"),
                  "--out", str(out)])  # fmt: skip
    table = pd.read_csv(out)
    assert set(table["prediction"]) <= {"yes", "no"} and list(table.columns)[2:] == [
        "p_no",
        "p_yes",
    ]
    assert (table["prediction"] == frame["kind"].head(50)).mean() > 0.9

    spec, _ = predict.load_run(uri, run_id)
    pre = spec["preprocessing"]
    assert pre["inputs"] == ["u", "shade", "v"]
    assert pre["categories"] == {"shade": ["dark", "light", "pale"]}
    assert pre["columns"] == ["u", "shade=dark", "shade=light", "shade=pale", "v"]
    data = make_datamodule("table", tmp_path, batch_size=8, path=str(tmp_path / "t.csv"),
                           label_column="kind")  # fmt: skip
    data.setup("test")
    trained_on = data.splits["test"].tensors[0]  # encoded and standardised by training
    _, x = predict.inputs(tmp_path / "new.csv", spec)
    torch.testing.assert_close(x, trained_on)
    pd.DataFrame({"u": [0.0], "shade": ["neon"], "v": [0.0]}).to_csv(tmp_path / "neon.csv")
    _, x = predict.inputs(tmp_path / "neon.csv", spec)
    mean, scale = (torch.tensor(pre[k], dtype=torch.float32) for k in ("mean", "scale"))
    torch.testing.assert_close(x[0, 1:4], -mean[1:4] / scale[1:4])  # shade: all 0 before scaling
    pd.DataFrame({"u": [0.0, None], "shade": ["dark", "pale"], "v": [0.0, 1.0]}).to_csv(
        tmp_path / "gap.csv", index=False)  # fmt: skip
    with pytest.raises(LossbenchError, match=r"gap.csv: row 2, column 'u' is empty"):
        predict.inputs(tmp_path / "gap.csv", spec)


def test_a_table_with_empty_cells_is_imputed_in_training_and_in_predict(tmp_path: Path) -> None:
    """dataset.missing=impute: a numeric column's empty cells take its training median, with a
    0/1 indicator, as scikit-learn's SimpleImputer(strategy="median", add_indicator=True) does;
    a text column's empty cell is its own category; predict fills a new CSV the same way."""
    from sklearn.impute import SimpleImputer

    rng = np.random.default_rng(1)
    label = rng.integers(0, 2, 200)
    u = rng.normal(size=200) + 3 * label
    u[rng.random(200) < 0.2] = np.nan  # empty in the training and the test split
    shade = np.where(label == 1, "dark", "light").astype(object)
    shade[rng.random(200) < 0.15] = None
    frame = pd.DataFrame({"u": u, "shade": shade, "v": rng.normal(size=200),
                          "kind": np.where(label == 1, "yes", "no"),  # splits all given:
                          "split": ["test"] * 50 + ["val"] * 20 + ["train"] * 130})  # fmt: skip
    frame.to_csv(tmp_path / "t.csv", index=False)
    uri = sqlite_uri(tmp_path / "mlflow.db")
    table = ["dataset=table", f"dataset.path={tmp_path / 't.csv'}", "dataset.label_column=kind"]
    with pytest.raises(LossbenchError, match=r"t.csv: row \d+, column '(u|shade)' is empty or NaN"):
        run.train(compose_cfg([*table, f"logger.tracking_uri={uri}"], tmp_path / "refused"))
    run_id = run.train(compose_cfg([
        *table, "dataset.missing=impute", "trainer.max_epochs=5", "trainer.accelerator=cpu",
        "progress_bar=log", f"logger.tracking_uri={uri}"], tmp_path / "run"))  # fmt: skip

    spec, _ = predict.load_run(uri, run_id)
    pre = spec["preprocessing"]
    assert pre["columns"] == ["u", "u=<missing>", "shade=<missing>", "shade=dark",
                              "shade=light", "v"]  # fmt: skip
    train = frame[frame["split"] == "train"]
    imputer = SimpleImputer(strategy="median", add_indicator=True).fit(train[["u", "v"]])
    assert [pre["fill"]["u"], pre["fill"]["v"]] == pytest.approx(imputer.statistics_.tolist())
    assert pre["indicate"] == ["u"]  # v has no empty cell in the training split
    data = make_datamodule("table", tmp_path, batch_size=8, path=str(tmp_path / "t.csv"),
                           label_column="kind", missing="impute")  # fmt: skip
    data.setup("fit")
    mean, scale = (torch.tensor(pre[k], dtype=torch.float64) for k in ("mean", "scale"))
    raw = data.splits["train"].tensors[0].double() * scale + mean  # before standardising
    raw = raw[raw[:, 5].argsort()]  # the training rows in v's order (v has no empty cell)
    train = train.sort_values("v")
    expected = imputer.transform(train[["u", "v"]])  # columns: u, v, u's indicator
    torch.testing.assert_close(raw[:, [0, 5, 1]], torch.tensor(expected), atol=1e-5, rtol=1e-5)
    empty_shade = torch.tensor(train["shade"].isna().to_numpy(), dtype=torch.float64)
    torch.testing.assert_close(raw[:, 2], empty_shade, atol=1e-5, rtol=1e-5)

    frame.drop(columns=["kind", "split"]).head(50).to_csv(tmp_path / "new.csv", index=False)
    data.setup("test")
    _, x = predict.inputs(tmp_path / "new.csv", spec)
    torch.testing.assert_close(x, data.splits["test"].tensors[0])  # filled as in training
    pd.DataFrame({"u": [None], "shade": [None], "v": [None]}).to_csv(tmp_path / "gap.csv",
                                                                      index=False)  # fmt: skip
    _, x = predict.inputs(tmp_path / "gap.csv", spec)
    raw = x[0].double() * scale + mean
    torch.testing.assert_close(raw, torch.tensor([pre["fill"]["u"], 1.0, 1.0, 0.0, 0.0,
                                                  pre["fill"]["v"]], dtype=torch.float64),
                               atol=1e-5, rtol=1e-5)  # fmt: skip
    out = tmp_path / "pred.csv"
    predict.main(["--tracking-uri", uri, "--run", run_id, "--input", str(tmp_path / "new.csv"),
                  "--out", str(out)])  # fmt: skip
    assert (pd.read_csv(out)["prediction"] == frame["kind"].head(50)).mean() > 0.85


def test_a_run_without_weights_is_refused(digits_run, tmp_path: Path, capsys) -> None:
    store, _ = digits_run
    uri = sqlite_uri(store / "mlflow.db")
    bare = run.train(compose_cfg([*DIGITS, "trainer.max_epochs=1", "save_weights=false",
                                  f"logger.tracking_uri={uri}"], tmp_path / "run"))  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        predict.main(["--tracking-uri", uri, "--run", bare, "--input", str(tmp_path),
                      "--out", str(tmp_path / "p.csv")])  # fmt: skip
    assert stop.value.code == 2
    assert f"run {bare} has no saved weights" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()
    names = {a.path for a in MlflowClient(uri).list_artifacts(bare)}
    assert "weights.pt" not in names
