"""The runs of a study read back from MLflow, grouped by setting (dataset, label noise,
imbalance) and pair (head + loss, and a loss parameter where it varies between runs)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lossbench.report.summary import conditions, find_runs, stress_of, variants
from lossbench.tracking.mlflow_run import CONFUSION, RELIABILITY
from lossbench.tracking.store import quiet_downloads

ACC = "test/acc"


@dataclass
class Pair:
    """The finished runs of one (setting, head, loss[, varying loss and head parameters]) over
    seeds."""

    setting: str
    head: str
    loss: str
    variant: str = ""
    runs: list[Run] = field(default_factory=list)
    val_curves: list[list[float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.head} + {self.loss}" + (f" [{self.variant}]" if self.variant else "")

    def by_seed(self, metric: str) -> dict[int, float]:
        return {int(r.data.tags["seed"]): r.data.metrics[metric] for r in self.runs
                if metric in r.data.metrics}  # fmt: skip

    def values(self, metric: str) -> np.ndarray:
        return np.array(list(self.by_seed(metric).values()))

    @property
    def test_share(self) -> float:
        """n_test / n_train (mean over its runs) where the pair's runs were tested on test splits
        of their own (``test_split`` fingerprints differ: each seed carved its own split), else
        0: one fixed test split."""
        tags = [r.data.tags for r in self.runs if "test_split" in r.data.tags]
        if len({t["test_split"] for t in tags}) < 2:
            return 0.0
        return float(np.mean([int(t["n_test"]) / int(t["n_train"]) for t in tags]))

    def mean_std(self, metric: str) -> tuple[float, float]:
        v = self.values(metric)
        if not len(v):
            return float("nan"), float("nan")
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def setting_of(run: Run, condition: str = "") -> str:
    """The dataset, the stress conditions and the config values that set the run apart from
    other runs of its dataset (``summary.conditions``), as a heading."""
    return ", ".join(s for s in (run.data.tags["dataset"], stress_of(run), condition) if s)


def load(client: MlflowClient, experiment: str, sweep: str | None) -> tuple[list[Pair], list[Run]]:
    """The FINISHED runs grouped by setting and pair (with their val/loss curves), and the
    other runs. A loss (head) parameter that varies between runs of the same loss (head) names
    the pair, e.g. ``sigmoid + bce_logits [binary_outputs=2]``; other config values that vary
    between the runs (``model=cnn``) make settings of their own. Of runs of one pair and seed in
    a setting (``rerun=true``), the newest counts."""
    runs = find_runs(client, experiment, sweep, limit=5000)  # earlier reports left out
    finished = [r for r in runs if r.info.status == "FINISHED"]
    others = [r for r in runs if r.info.status != "FINISHED"]
    condition = conditions(finished)
    settings = {r.info.run_id: setting_of(r, condition[r.info.run_id]) for r in finished}
    variant_of = variants(finished, lambda r: settings[r.info.run_id])
    pairs: dict[tuple, Pair] = {}
    for r in finished:  # newest first
        t, setting, variant = r.data.tags, settings[r.info.run_id], variant_of[r.info.run_id]
        pair = pairs.setdefault((setting, t["head"], t["loss"], variant),
                                Pair(setting, t["head"], t["loss"], variant))  # fmt: skip
        if any(seen.data.tags["seed"] == t["seed"] for seen in pair.runs):
            continue  # an older run of the same config
        pair.runs.append(r)
        history = sorted(client.get_metric_history(r.info.run_id, "val/loss"), key=lambda m: m.step)
        pair.val_curves.append([m.value for m in history])
    return list(pairs.values()), others


def fmt(mean: float, std: float) -> str:
    return "—" if np.isnan(mean) else f"{mean:.4f} ± {std:.4f}"


def ranked(pairs: list[Pair], metric: str = ACC, higher: bool = True) -> list[Pair]:
    """Best first by the mean of ``metric`` (lowest first unless ``higher``); pairs without it
    last."""

    def key(p: Pair) -> tuple[bool, float]:
        mean = p.mean_std(metric)[0]
        return bool(np.isnan(mean)), -mean if higher else mean

    return sorted(pairs, key=key)


def artifacts_of(client: MlflowClient, pair: Pair, name: str) -> list[dict]:
    """The JSON artifact ``name`` of each of the pair's runs that logged it."""
    found = []
    for run in pair.runs:
        if name not in {a.path for a in client.list_artifacts(run.info.run_id)}:
            continue
        with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
            path = Path(client.download_artifacts(run.info.run_id, name, tmp))
            found.append(json.loads(path.read_text()))
    return found


def summed_confusion(client: MlflowClient, pair: Pair) -> tuple[list[str], np.ndarray] | None:
    """The pair's test confusion matrices (``confusion_matrix.json`` of each multi-class run),
    summed over its seeds; None when its runs recorded none."""
    saved = artifacts_of(client, pair, CONFUSION)
    if not saved:
        return None
    return saved[0]["labels"], sum(np.array(s["matrix"]) for s in saved)


def summed_bins(client: MlflowClient, pair: Pair) -> dict | None:
    """The pair's test reliability bins (``reliability.json``), summed over its seeds."""
    saved = artifacts_of(client, pair, RELIABILITY)
    if not saved:
        return None
    return {k: np.sum([s[k] for s in saved], axis=0).tolist() for k in saved[0]}
