"""``python -m lossbench.report``: which head/loss pair wins, by how much, and is it real.

Reads the runs of an experiment (one sweep if ``--sweep``) back from MLflow, groups the
FINISHED ones by dataset/head/loss and writes ``DIR/REPORT.md``: per dataset, one table ranked
by mean test accuracy with mean ± std over seeds of test accuracy, test macro-F1 (and mAP for
multi-label), the best validation loss, epochs and wall time per run, and whether each pair's
test accuracy differs from the best pair's: Welch's two-sided t-test over seeds (unequal
variances, ``scipy.stats.ttest_ind(equal_var=False)``) at α = 0.05. Failed, killed and running
runs are listed, not averaged in, and so are the sweep's skipped jobs (invalid pairs, configs
already finished), from the record the sweep's end leaves in the experiment. Plots (PNG,
linked): validation loss per epoch, mean with a ±1 std band over seeds, per pair; test metrics
as bars with ±1 std error bars; for a multi-class dataset, the best pair's test confusion
matrix, summed over its seeds. The report and plots are also logged to a summary run of the
sweep (tag ``report_of``), for the dashboard.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from scipy import stats

from lossbench.errors import exit_on_user_error
from lossbench.store import experiment_named, open_store, quiet_downloads
from lossbench.summary import REPORT_TAG, find_runs, skipped_jobs
from lossbench.tracking import CONFUSION

ALPHA = 0.05
METRICS = ("test/acc", "test/f1_macro", "test/map")


@dataclass
class Pair:
    """The finished runs of one (dataset, head, loss) over seeds."""

    dataset: str
    head: str
    loss: str
    runs: list[Run] = field(default_factory=list)
    val_curves: list[list[float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.head} + {self.loss}"

    def values(self, metric: str) -> np.ndarray:
        return np.array([r.data.metrics[metric] for r in self.runs if metric in r.data.metrics])

    def mean_std(self, metric: str) -> tuple[float, float]:
        v = self.values(metric)
        if not len(v):
            return float("nan"), float("nan")
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def load(client: MlflowClient, experiment: str, sweep: str | None) -> tuple[list[Pair], list[Run]]:
    """The FINISHED runs grouped by pair (with their val/loss curves), and the other runs."""
    runs = find_runs(client, experiment, sweep, limit=5000)  # earlier reports left out
    pairs: dict[tuple[str, str, str], Pair] = {}
    others = []
    for run in runs:
        if run.info.status != "FINISHED":
            others.append(run)
            continue
        t = run.data.tags
        pair = pairs.setdefault((t["dataset"], t["head"], t["loss"]), Pair(*(
            t["dataset"], t["head"], t["loss"])))  # fmt: skip
        pair.runs.append(run)
        history = sorted(
            client.get_metric_history(run.info.run_id, "val/loss"), key=lambda m: m.step
        )
        pair.val_curves.append([m.value for m in history])
    return list(pairs.values()), others


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test; NaN with fewer than 2 values a side."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if np.allclose(a.std(), 0) and np.allclose(b.std(), 0):
        return 1.0 if np.isclose(a.mean(), b.mean()) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def fmt(mean: float, std: float) -> str:
    return "—" if np.isnan(mean) else f"{mean:.4f} ± {std:.4f}"


def ranked(pairs: list[Pair]) -> list[Pair]:
    return sorted(pairs, key=lambda p: -p.mean_std("test/acc")[0])


def dataset_table(pairs: list[Pair]) -> list[str]:
    ranked_pairs = ranked(pairs)
    best = ranked_pairs[0].values("test/acc")
    multilabel = any(p.values("test/map").size for p in pairs)
    header = ["rank", "head + loss", "seeds", "test acc", "test macro-F1"]
    header += ["test mAP"] if multilabel else []
    header += ["best val loss", "epochs", "s / run", "vs best: Welch p", f"differs (α={ALPHA})"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, p in enumerate(ranked_pairs, 1):
        best_val = np.array([min(c) for c in p.val_curves if c])
        epochs = np.array([len(c) for c in p.val_curves])
        wall = np.array([(r.info.end_time - r.info.start_time) / 1000 for r in p.runs])
        pvalue = welch_p(p.values("test/acc"), best) if i > 1 else float("nan")
        differs = "—" if i == 1 else ("n/a" if np.isnan(pvalue) else
                                       ("yes" if pvalue < ALPHA else "no"))  # fmt: skip
        row = [str(i), p.name, str(len(p.runs)), fmt(*p.mean_std("test/acc")),
               fmt(*p.mean_std("test/f1_macro"))]  # fmt: skip
        row += [fmt(*p.mean_std("test/map"))] if multilabel else []
        row += [
            fmt(best_val.mean(), best_val.std(ddof=1) if len(best_val) > 1 else 0.0),
            f"{epochs.mean():.1f}",
            f"{wall.mean():.1f}",
            "—" if np.isnan(pvalue) else f"{pvalue:.3g}",
            differs,
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def plot_curves(pairs: list[Pair], path: Path) -> None:
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    for p in pairs:
        n = min(len(c) for c in p.val_curves)
        curves = np.array([c[:n] for c in p.val_curves])
        x = np.arange(1, n + 1)
        mean, std = curves.mean(0), curves.std(0)
        ax.plot(x, mean, marker="o", label=p.name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val/loss (each pair's own loss)")
    ax.legend()
    fig.savefig(path)


def plot_bars(pairs: list[Pair], path: Path) -> None:
    metrics = [m for m in METRICS if any(p.values(m).size for p in pairs)]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(pairs)
    for i, p in enumerate(pairs):
        means, stds = zip(*(p.mean_std(m) for m in metrics), strict=True)
        x = np.arange(len(metrics)) + i * width
        ax.bar(x, means, width, yerr=stds, capsize=3, label=p.name)
    ax.set_xticks(np.arange(len(metrics)) + width * (len(pairs) - 1) / 2, metrics)
    ax.set_ylabel("mean over seeds, ±1 std")
    ax.legend()
    fig.savefig(path)


def summed_confusion(client: MlflowClient, pair: Pair) -> tuple[list[str], np.ndarray] | None:
    """The pair's test confusion matrices (``confusion_matrix.json`` of each multi-class run),
    summed over its seeds; None when its runs recorded none."""
    labels, total = None, None
    for run in pair.runs:
        if CONFUSION not in {a.path for a in client.list_artifacts(run.info.run_id)}:
            continue
        with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
            saved = json.loads(Path(client.download_artifacts(run.info.run_id, CONFUSION, tmp))
                               .read_text())  # fmt: skip
        labels, matrix = saved["labels"], np.array(saved["matrix"])
        total = matrix if total is None else total + matrix
    return None if total is None else (labels, total)


def confusion_table(labels: list[str], matrix: np.ndarray) -> list[str]:
    """Counts, rows: true class, columns: predicted class (numbered as in the rows)."""
    header = ["true ↓ predicted →", *map(str, range(len(labels)))]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(labels)]
    for i, (name, row) in enumerate(zip(labels, matrix.tolist(), strict=True)):
        lines.append(f"| {i} {name} | " + " | ".join(map(str, row)) + " |")
    return lines


def plot_confusion(labels: list[str], matrix: np.ndarray, title: str, path: Path) -> None:
    """Rows normalised to the share of each true class, as a heat map with the shares."""
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(share):
        if v >= 0.005:
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v > 0.5 else "black")  # fmt: skip
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of the true class")
    fig.savefig(path)


def skipped_section(client: MlflowClient, experiment: str, sweep: str | None) -> list[str]:
    """The sweep's skipped jobs (they have no MLflow run), from the record its end left in the
    experiment (``summary.record_skipped``): one line per reason, overrides shared by every
    skipped job said once."""
    records = skipped_jobs(client, experiment_named(client, experiment).experiment_id, sweep)
    groups = [g for r in records for g in r["groups"]]
    if not groups:
        return []
    jobs = [job for g in groups for job in g["jobs"]]
    common = [o for o in jobs[0] if all(o in job for job in jobs)]
    lines = ["", "## Skipped jobs (no run, not averaged in)", "",
             f"{len(jobs)} jobs of the sweep were skipped before training"
             + (f"; all with `{' '.join(common)}`" if common else "") + ":", ""]  # fmt: skip
    for g in groups:
        own = [" ".join(o for o in job if o not in common) or "(no other override)"
               for job in g["jobs"]]  # fmt: skip
        lines.append(f"- {g['reason']}: " + ", ".join(f"`{o}`" for o in own))
    if omitted := sum(r["omitted"] for r in records):
        lines.append(f"- and {omitted} more (see the sweep's closing summary)")
    return lines


def log_summary_run(client: MlflowClient, experiment: str, sweep: str | None, out: Path) -> str:
    """Log the report and its plots to a summary run of the sweep, for the dashboard."""
    exp = experiment_named(client, experiment)
    tags = {REPORT_TAG: sweep or "all", "mlflow.runName": f"report-{sweep or 'all'}"}
    if sweep:
        tags["sweep_id"] = sweep
    run = client.create_run(exp.experiment_id, tags=tags)
    client.log_artifacts(run.info.run_id, str(out), "report")
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def write_report(
    tracking_uri: str,
    experiment: str,
    sweep: str | None,
    out: Path,
    log: bool = False,
    extra: Sequence[str] = (),
) -> Path:
    """Write ``out/REPORT.md`` and its plots (``extra``: markdown lines of a closing section);
    with ``log``, also to a summary run of the sweep."""
    client = open_store(tracking_uri)
    pairs, others = load(client, experiment, sweep)
    out.mkdir(parents=True, exist_ok=True)
    scope = f"sweep `{sweep}`" if sweep else "all runs"
    lines = [
        f"# lossbench report: experiment `{experiment}`, {scope}",
        "",
        f"Ranked by mean test accuracy over seeds (mean ± std, sample std). 'differs': Welch's "
        f"two-sided t-test of the pair's test accuracies against the best pair's, α = {ALPHA}. "
        "No correction for multiple comparisons: with k pairs, about "
        f"{ALPHA}·(k−1) false 'yes' are expected by chance. Val loss is each pair's own loss, so "
        "compare it within a pair, not across losses.",
    ]
    for dataset in sorted({p.dataset for p in pairs}):
        group = [p for p in pairs if p.dataset == dataset]
        slug = dataset.replace("/", "_")
        plot_curves(group, out / f"{slug}-val-loss.png")
        plot_bars(group, out / f"{slug}-test-metrics.png")
        lines += ["", f"## {dataset}", "", *dataset_table(group), ""]
        lines += [f"![validation loss]({slug}-val-loss.png)", "",
                  f"![test metrics]({slug}-test-metrics.png)"]  # fmt: skip
        best = ranked(group)[0]
        confusion = summed_confusion(client, best)
        if confusion is not None:
            title = f"{best.name}: test split, {len(best.runs)} seeds summed"
            plot_confusion(*confusion, title, out / f"{slug}-confusion.png")
            lines += ["", f"### Confusion matrix of the best pair, {best.name}", "",
                      f"Test split, counts summed over its {len(best.runs)} seeds; rows: true "
                      "class, columns: predicted class.", "", *confusion_table(*confusion), "",
                      f"![confusion matrix]({slug}-confusion.png)"]  # fmt: skip
    if others:
        lines += ["", "## Not averaged in", ""]
        lines += [f"- {r.info.run_name} ({r.info.run_id}): {r.info.status}"
                  f"{': ' + r.data.tags['failure'][:200] if 'failure' in r.data.tags else ''}"
                  for r in others]  # fmt: skip
    lines += skipped_section(client, experiment, sweep)
    lines += ["", *extra] if extra else []
    path = out / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    if log:
        log_summary_run(client, experiment, sweep, out)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="lossbench")
    parser.add_argument("--sweep", default=None, help="a sweep_id tag")
    parser.add_argument("--out", type=Path, default=Path("report"))
    parser.add_argument(
        "--no-log", action="store_true", help="do not log the report to a summary MLflow run"
    )
    args = parser.parse_args(argv)
    with exit_on_user_error("lossbench.report"):
        log = not args.no_log
        path = write_report(args.tracking_uri, args.experiment, args.sweep, args.out, log)
    print(path)


if __name__ == "__main__":
    main()
