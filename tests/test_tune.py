"""``python -m lossbench.tune``: a real Optuna study per pair (hydra-optuna-sweeper), then each
pair over seeds at its own best learning rate, then the report."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from conftest import TINY_OVERRIDES, TINY_SIZES, sqlite_uri
from lossbench.tracking import sweep_id

PAIRS = (("softmax", "ce"), ("sigmoid", "bce_logits"))
TRIALS = 3


def test_each_pair_is_compared_at_its_own_best_lr(tmp_path: Path, tiny_data) -> None:
    uri = sqlite_uri(tmp_path / "mlflow.db")
    sweeps, out = tmp_path / "sweeps", tmp_path / "report"
    cmd = [
        sys.executable, "-m", "lossbench.tune", "--n-trials", str(TRIALS), "--seeds", "1,2",
        "--pairs", ",".join(f"{h}:{loss}" for h, loss in PAIRS), "--dir", str(sweeps),
        "--out", str(out), f"data_dir={tiny_data[0]}", f"logger.tracking_uri={uri}",
        *TINY_OVERRIDES,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tune_lr")
    runs = client.search_runs([exp.experiment_id], "tags.report_of IS NULL", max_results=100)
    report = (out / "REPORT.md").read_text()
    compared = [r for r in runs if r.data.tags.get("sweep_id") == sweep_id(sweeps / "compare")]
    for head, loss in PAIRS:
        study = sweeps / "search" / f"{head}-{loss}"
        runs_of_study = [r for r in runs if r.data.tags.get("sweep_id") == sweep_id(study)]
        assert {r.info.status for r in runs_of_study} == {"FINISHED"}
        trials: dict[float, dict[str, float]] = {}  # lr → seed → best val/acc over epochs
        for r in runs_of_study:
            history = client.get_metric_history(r.info.run_id, "val/acc")
            assert r.data.metrics["val/acc_best"] == max(m.value for m in history)
            lr = float(r.data.params["optimizer/lr"])
            trials.setdefault(lr, {})[r.data.tags["seed"]] = r.data.metrics["val/acc_best"]
        assert len(trials) == TRIALS and all(1e-4 <= lr <= 1e-1 for lr in trials)
        assert all(set(seeds) == {"101", "102"} for seeds in trials.values())  # tune.seeds
        means = {lr: np.mean(list(seeds.values())) for lr, seeds in trials.items()}
        best_lr = max(means, key=means.get)  # a trial's score: the mean over its seeds
        results = OmegaConf.load(study / "optimization_results.yaml")
        assert np.isclose(results.best_params["optimizer.lr"], best_lr)
        assert np.isclose(results.best_value, means[best_lr])

        mine = [r for r in compared if (r.data.tags["head"], r.data.tags["loss"]) == (head, loss)]
        assert sorted(r.data.tags["seed"] for r in mine) == ["1", "2"]
        assert {r.info.status for r in mine} == {"FINISHED"}
        assert all(np.isclose(float(r.data.params["optimizer/lr"]), best_lr) for r in mine)
        lr_table = f"| {head} + {loss} | {TRIALS} | "
        row = next(line for line in report.splitlines() if line.startswith(lr_table))
        assert f"| {TRIALS} | {best_lr:.3g} |" in row
        assert f"| {head} + {loss} | 2 |" in report  # its row in the ranked table, 2 seeds
    assert len(compared) == 2 * len(PAIRS)  # the invalid cells of heads × losses are skipped

    # multi-class: the best pair's confusion matrix, summed over its seeds, as a table and a plot
    rank1 = re.search(r"^\| 1 \| (\w+) \+ (\w+) \|", report, re.M).groups()
    best_runs = [r for r in compared if (r.data.tags["head"], r.data.tags["loss"]) == rank1]
    total = sum(
        np.array(
            mlflow.artifacts.load_dict(f"{r.info.artifact_uri}/confusion_matrix.json")["matrix"]
        )
        for r in best_runs
    )
    assert total.sum() == 2 * TINY_SIZES["test"]
    assert f"Confusion matrix of the best pair, {rank1[0]} + {rank1[1]}" in report
    for i, row in enumerate(total.tolist()):
        assert re.search(rf"^\| {i} .* \| " + re.escape(" | ".join(map(str, row))) + r" \|$",
                         report, re.M)  # fmt: skip
    assert (out / "fashion_mnist-confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "](fashion_mnist-confusion.png)" in report
