"""``python -m lossbench.predict``: use a run's classifier on new inputs.

``--tracking-uri URI --run RUN_ID --input (FOLDER|CSV) --out FILE.csv`` loads the run's tested
weights (artifact ``weights.pt``) and what it needs to use them (``predictor.json``: model,
head, thresholds, class names, preprocessing), and writes one row per input: the predicted
label (multi-label: the ``|``-joined labels) and each class's probability. Inputs: a folder of
images (searched recursively), or a CSV with a ``path`` column of images (relative to the CSV)
or, for a run on a table, the run's feature columns.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS

from lossbench.data.files import ImageFiles
from lossbench.errors import LossbenchError, exit_on_user_error
from lossbench.heads import make_head
from lossbench.models import make_model
from lossbench.tracking.mlflow_run import PREDICTOR, WEIGHTS
from lossbench.tracking.store import open_store, quiet_downloads

BATCH = 256


def load_run(tracking_uri: str, run_id: str) -> tuple[dict[str, Any], torch.nn.Module]:
    """The run's predictor spec and its model with the tested weights."""
    client = open_store(tracking_uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        raise LossbenchError(f"--run {run_id}: no such run in {tracking_uri}") from None
    names = {a.path for a in client.list_artifacts(run_id)}
    if not {WEIGHTS, PREDICTOR} <= names:
        raise LossbenchError(
            f"run {run_id} has no saved weights (artifacts {WEIGHTS} and {PREDICTOR}): it "
            "failed, was stopped, or ran with save_weights=false. Fix: predict with a FINISHED "
            "run that saved its weights, or train the config again"
        )
    with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
        spec = client.download_artifacts(run_id, PREDICTOR, tmp)
        weights = client.download_artifacts(run_id, WEIGHTS, tmp)
        spec = json.loads(Path(spec).read_text())
        state = torch.load(weights, weights_only=True, map_location="cpu")
    model = make_model(spec["model"]["name"], spec["input_shape"], len(spec["classes"]),
                       spec.get("one_logit", False), **spec["model"]["params"])  # fmt: skip
    model.load_state_dict(state)
    return spec, model.eval()


def inputs(path: Path, spec: dict[str, Any]) -> tuple[list[str], Tensor]:
    """``(names, model inputs)`` for a folder of images or a CSV, preprocessed as in training."""
    pre = spec["preprocessing"]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            raise LossbenchError(f"--input {path} holds no image ({', '.join(IMG_EXTENSIONS)})")
        return [str(f.relative_to(path)) for f in files], images(files, pre)
    if path.suffix not in (".csv", ".tsv", ".gz", ".parquet"):
        raise LossbenchError(f"--input {path}: give a folder of images or a .csv / .parquet file")
    from lossbench.data.tables import encode, first_empty, read_table

    table = read_table(path)
    if pre["kind"] == "image":
        if "path" not in table.columns:
            raise LossbenchError(f"{path} has no 'path' column of images (relative to its folder)")
        files = [(path.parent / p).resolve() for p in table["path"]]
        return list(table["path"].astype(str)), images(files, pre)
    columns = pre.get("inputs", pre["columns"])  # the file's columns, before encoding
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise LossbenchError(
            f"{path} lacks the run's feature columns {', '.join(missing)}. Fix: give a table with "
            f"the columns it was trained on: {', '.join(columns)}"
        )
    if "fill" not in pre and (empty := first_empty(table, columns)) is not None:
        raise LossbenchError(
            f"{path}: row {empty[0]}, column {empty[1]!r} is empty. Fix: fill it (the model "
            "was trained without missing values: dataset.missing=refuse), or drop the row"
        )
    encoded, _ = encode(table, columns, pre.get("categories", {}), pre.get("fill"),
                        pre.get("indicate", ()))  # fmt: skip
    x = torch.tensor(encoded, dtype=torch.float32)
    x = (x - torch.tensor(pre["mean"])) / torch.tensor(pre["scale"])
    return [str(i) for i in range(len(table))], x


def images(files: list[Path], pre: dict[str, Any]) -> Tensor:
    for f in files:
        if not f.is_file():
            raise LossbenchError(f"the image {f} does not exist. Fix: correct its path")
    size = pre["size"][0]
    decoded = ImageFiles(files, torch.zeros(len(files)), pre["channels"], size)
    x = torch.stack([decoded[i][0] for i in range(len(files))]).float() / 255
    mean, std = (torch.tensor(pre[k]).view(-1, 1, 1) for k in ("mean", "std"))
    return (x - mean) / std


def predict(spec: dict[str, Any], model: torch.nn.Module, x: Tensor) -> tuple[list[str], Tensor]:
    """The predicted label names and the class probabilities of ``x``."""
    head_params = {k: v for k, v in spec["head"].items() if k != "name"}
    head = make_head(spec["head"]["name"], **head_params)
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + BATCH]) for i in range(0, len(x), BATCH)])
    probs = head.probs(logits)
    classes = spec["classes"]
    thresholds = torch.tensor(spec["thresholds"]) if spec.get("thresholds") else None
    chosen = head.predict(logits, spec["task"], thresholds, spec.get("one_logit", False))
    if spec["task"] == "multiclass":
        return [classes[i] for i in chosen.tolist()], probs
    return ["|".join(c for c, on in zip(classes, row, strict=True) if on)
            for row in chosen.tolist()], probs  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--run", required=True, help="the id of a FINISHED run")
    parser.add_argument("--input", type=Path, required=True, help="a folder of images, or a CSV")
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write")
    args = parser.parse_args(argv)
    with exit_on_user_error("lossbench.predict"):
        spec, model = load_run(args.tracking_uri, args.run)
        if not args.input.exists():
            raise LossbenchError(f"--input {args.input}: no such file or folder")
        names, x = inputs(args.input.resolve(), spec)
        labels, probs = predict(spec, model, x)
    table = pd.DataFrame({"input": names, "prediction": labels})
    for c, name in enumerate(spec["classes"]):
        table[f"p_{name}"] = probs[:, c].numpy()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(f"{len(table)} predictions of run {args.run} → {args.out}")


if __name__ == "__main__":
    main()
