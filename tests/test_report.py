"""The report on a small real sweep: its rows, means and stds (computed here from the store),
the significance column and the plots."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats

from conftest import run_train, sqlite_uri
from lossbench.report import write_report


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_data) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    proc = run_train(
        tmp, tiny_data[0], "dataset=multilabel", "dataset.n_samples=400", "dataset.val_size=80",
        "dataset.test_size=80", "dataset.batch_size=32", "head=sigmoid,softmax",
        "loss=bce_logits,focal", "seed=1,2", "trainer.max_epochs=3", "trainer.accelerator=cpu",
        "progress_bar=log",
        multirun=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp


def test_report_lists_the_skipped_jobs(sweep: Path) -> None:
    """softmax + bce_logits/focal are invalid on a multi-label set: their 4 jobs open no MLflow
    run; the report lists each, with its reason, from the record the sweep left."""
    skipped = [json.loads(p.read_text()) for p in (sweep / "multirun").glob("*/outcome.json")]
    skipped = [j for j in skipped if j["status"] == "SKIPPED"]
    assert len(skipped) == 4
    text = write_report(sqlite_uri(sweep / "mlflow.db"), "lossbench", None, sweep / "rep2")
    section = text.read_text().split("## Skipped jobs")[1]
    assert "4 jobs of the sweep were skipped" in section
    assert "head=softmax" in section.splitlines()[2]  # said once, shared by all four
    for job in skipped:
        loss, seed = (o for o in job["overrides"] if o.startswith(("loss=", "seed=")))
        reason = job["reason"].split(". ")[0]
        (line,) = [x for x in section.splitlines() if x.startswith(f"- {reason}: ")]
        assert f"`{loss} {seed}`" in line


def test_report_rows_means_stds_and_plots(sweep: Path) -> None:
    report = write_report(sqlite_uri(sweep / "mlflow.db"), "lossbench", None, sweep / "rep", True)
    text = report.read_text()
    client = MlflowClient(sqlite_uri(sweep / "mlflow.db"))
    runs = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    (summary,) = [r for r in runs if "report_of" in r.data.tags]
    assert {a.path for a in client.list_artifacts(summary.info.run_id, "report")} >= {
        "report/REPORT.md",
        "report/multilabel-val-loss.png",
    }
    runs = [r for r in runs if r is not summary]
    assert len(runs) == 4
    acc = {}
    for loss in ("bce_logits", "focal"):
        mine = [r for r in runs if r.data.tags["loss"] == loss]
        acc[loss] = np.array([r.data.metrics["test/acc"] for r in mine])
        f1 = np.array([r.data.metrics["test/f1_macro"] for r in mine])
        row = next(line for line in text.splitlines() if f"| sigmoid + {loss} |" in line)
        assert f"{acc[loss].mean():.4f} ± {acc[loss].std(ddof=1):.4f}" in row
        assert f"{f1.mean():.4f} ± {f1.std(ddof=1):.4f}" in row
        assert "| 2 |" in row  # seeds
    ranked = [re.search(r"\| sigmoid \+ (\w+) \|", line).group(1)
              for line in text.splitlines() if "| sigmoid + " in line]  # fmt: skip
    assert ranked == sorted(acc, key=lambda k: -acc[k].mean())
    worse = ranked[1]
    p = stats.ttest_ind(acc[worse], acc[ranked[0]], equal_var=False).pvalue
    row = next(line for line in text.splitlines() if f"| sigmoid + {worse} |" in line)
    if np.isfinite(p):
        assert f"{p:.3g}" in row
    assert "## multilabel" in text and "test mAP" in text
    for png in ("multilabel-val-loss.png", "multilabel-test-metrics.png"):
        assert (sweep / "rep" / png).read_bytes()[:4] == b"\x89PNG"
        assert f"]({png})" in text
