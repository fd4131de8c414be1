"""``python -m lossbench.report``: which head/loss choices are equivalent, which are worse and by
how much, and how many more seeds would settle the rest.

Reads the runs of an experiment (one sweep if ``--sweep``) back from MLflow, groups the FINISHED
ones by setting (dataset, label noise, imbalance) and pair (head, loss, and the loss parameters
that vary, e.g. ``class_weight``), and writes ``DIR/REPORT.md`` with, per setting: a paragraph of
verdicts a user can act on; the pairs ranked by mean test accuracy, each compared with the best
pair on accuracy and on the scores that compare across losses (:mod:`lossbench.stats`: paired
over seeds, Holm-corrected, equivalence within ±``--margin`` accuracy points); a calibration
table (NLL, Brier, ECE before and after temperature scaling); an A/A check (pairs computing the
same function must come out equivalent or undecided); where the setting is one a paper studied,
whether the runs agree with its direction; plots (validation loss, test metrics, the best two
pairs' reliability diagrams, the best pair's confusion matrix); per-class test accuracy under
imbalance. Failed, killed and running runs are listed, not averaged in, and so are the sweep's
skipped jobs. Beside it, ``runs.csv`` (one row per run) and ``verdicts.csv`` (one row per pair
and metric). The report and its files are also logged to a summary run of the sweep (tag
``report_of``), for the dashboard.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lossbench import stats
from lossbench.errors import exit_on_user_error
from lossbench.report_plots import plot_bars, plot_confusion, plot_curves, plot_reliability
from lossbench.store import experiment_named, open_store, quiet_downloads
from lossbench.summary import REPORT_TAG, find_runs, skipped_jobs
from lossbench.tracking import CONFUSION, RELIABILITY

ACC = "test/acc"
HIGHER = ("test/acc", "test/f1_macro", "test/hamming_acc", "test/f1_micro", "test/map",
          "test/lrap", "test/f1_samples")  # fmt: skip
LOWER = ("test/nll", "test/brier", "test/ece", "test/nll_ts", "test/ece_ts", "test/ranking_loss",
         "test/one_error")  # fmt: skip
VERDICT_METRICS = {
    "multiclass": ("test/acc", "test/f1_macro", "test/nll", "test/brier", "test/ece",
                   "test/ece_ts"),
    "multilabel": ("test/acc", "test/hamming_acc", "test/f1_micro", "test/map", "test/lrap",
                   "test/nll", "test/brier", "test/ece"),
}  # fmt: skip
CALIBRATION = ("test/nll", "test/brier", "test/ece", "test/nll_ts", "test/ece_ts",
               "test/temperature")  # fmt: skip
BAR_METRICS = ("test/acc", "test/f1_macro", "test/map")
NLL_MARGIN = 0.01  # nats: the equivalence margin of the NLL scores
# Pairs that compute the same function (the built-in A/A check)
SAME_FUNCTION = (("softmax", ("ce", "nll", "ce_onehot")),
                 ("sigmoid", ("bce", "bce_logits", "multilabel_soft_margin")))  # fmt: skip
RUN_COLUMNS = ("dataset", "head", "loss", "seed", "model", "task", "sweep_id")
PARAM_COLUMNS = ("optimizer/lr", "trainer/max_epochs", "test_on", "dataset/noise/rate",
                 "dataset/noise/kind", "dataset/imbalance/factor", "loss/class_weight")  # fmt: skip


@dataclass(frozen=True)
class Claim:
    """A published direction the report checks where the setting matches: ``better`` should
    beat ``worse`` on test accuracy."""

    source: str
    statement: str
    better: str
    worse: str
    applies: tuple[str, float]  # (setting attribute, minimum value)


CLAIMS = (
    Claim("Ma et al. 2020", "under heavy symmetric label noise, CE's last-epoch accuracy collapses "
          "while NCE+RCE holds", "softmax + nce_rce", "softmax + ce", ("symmetric", 0.4)),
    Claim("Cui et al. 2019", "class-balanced weighting helps under class imbalance",
          "softmax + ce [class_weight=effective_number]", "softmax + ce", ("imbalance", 10)),
    Claim("Cui et al. 2019", "class-balanced weighting helps the focal loss under imbalance",
          "softmax + focal [class_weight=effective_number]", "softmax + focal",
          ("imbalance", 10)),
)  # fmt: skip


def margin_for(metric: str, points: float) -> float:
    """The equivalence margin: ``points`` accuracy points for scores in [0, 1], NLL_MARGIN nats
    for the NLLs."""
    return NLL_MARGIN if "nll" in metric else points / 100


@dataclass
class Pair:
    """The finished runs of one (setting, head, loss[, varying loss parameters]) over seeds."""

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

    def mean_std(self, metric: str) -> tuple[float, float]:
        v = self.values(metric)
        if not len(v):
            return float("nan"), float("nan")
        return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def setting_of(run: Run) -> str:
    """The dataset and the stress conditions of a run, as a heading."""
    p = run.data.params
    parts = [run.data.tags["dataset"]]
    rate = float(p.get("dataset/noise/rate", 0) or 0)
    if rate:
        parts.append(f"{p.get('dataset/noise/kind', 'symmetric')} noise {rate:g}")
    factor = float(p.get("dataset/imbalance/factor", 1) or 1)
    if factor > 1:
        parts.append(f"imbalance {factor:g}")
    return ", ".join(parts)


def load(client: MlflowClient, experiment: str, sweep: str | None) -> tuple[list[Pair], list[Run]]:
    """The FINISHED runs grouped by setting and pair (with their val/loss curves), and the
    other runs. A loss parameter that varies between runs of the same loss names the pair."""
    runs = find_runs(client, experiment, sweep, limit=5000)  # earlier reports left out
    finished = [r for r in runs if r.info.status == "FINISHED"]
    others = [r for r in runs if r.info.status != "FINISHED"]
    loss_params: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in finished:
        own = {k: v for k, v in r.data.params.items() if k.startswith("loss/") and k != "loss/name"}
        loss_params[setting_of(r), r.data.tags["loss"]].append(own)
    varying = {key: sorted({k for d in dicts for k in d if len({x.get(k) for x in dicts}) > 1})
               for key, dicts in loss_params.items()}  # fmt: skip
    pairs: dict[tuple, Pair] = {}
    for r in finished:
        t, setting = r.data.tags, setting_of(r)
        keys = varying[setting, t["loss"]]
        variant = ", ".join(f"{k.removeprefix('loss/')}={r.data.params.get(k)}" for k in keys)
        pair = pairs.setdefault((setting, t["head"], t["loss"], variant),
                                Pair(setting, t["head"], t["loss"], variant))  # fmt: skip
        pair.runs.append(r)
        history = sorted(client.get_metric_history(r.info.run_id, "val/loss"), key=lambda m: m.step)
        pair.val_curves.append([m.value for m in history])
    return list(pairs.values()), others


def fmt(mean: float, std: float) -> str:
    return "—" if np.isnan(mean) else f"{mean:.4f} ± {std:.4f}"


def ranked(pairs: list[Pair]) -> list[Pair]:
    return sorted(pairs, key=lambda p: -p.mean_std(ACC)[0])


def compare(pairs: list[Pair], metric: str, points: float) -> list[stats.Comparison]:
    """Every pair against the best by test accuracy on ``metric``, Holm-adjusted."""
    best, *rest = ranked(pairs)
    higher = metric in HIGHER
    found = [
        stats.paired(
            p.name,
            best.name,
            metric,
            p.by_seed(metric),
            best.by_seed(metric),
            margin_for(metric, points),
            higher,
        )  # fmt: skip
        for p in rest
        if p.by_seed(metric) and best.by_seed(metric)
    ]
    stats.adjust(found)
    return found


def same_function_checks(pairs: list[Pair], points: float) -> list[stats.Comparison]:
    """The A/A check: pairs that compute the same function, compared with each other on test
    accuracy (Holm over the comparisons made)."""
    names = {p.name: p for p in pairs}
    found = []
    for head, losses in SAME_FUNCTION:
        present = [names[f"{head} + {loss}"] for loss in losses if f"{head} + {loss}" in names]
        for i, a in enumerate(present):
            for b in present[i + 1 :]:
                found.append(stats.paired(a.name, b.name, ACC, a.by_seed(ACC), b.by_seed(ACC),
                                          margin_for(ACC, points)))  # fmt: skip
    stats.adjust(found)
    return found


def claims_checked(pairs: list[Pair], setting: str, points: float) -> list[str]:
    """Where the setting is one a paper studied, whether these runs agree with its direction."""
    names = {p.name: p for p in pairs}
    noise = [part for part in setting.split(", ") if "noise" in part]
    imbalance = [part for part in setting.split(", ") if part.startswith("imbalance")]
    lines = []
    for claim in CLAIMS:
        kind, minimum = claim.applies
        if kind == "symmetric":
            ok = any(n.startswith("symmetric") and float(n.split()[-1]) >= minimum for n in noise)
        else:
            ok = any(float(i.split()[-1]) >= minimum for i in imbalance)
        if not ok or claim.better not in names or claim.worse not in names:
            continue
        c = stats.paired(claim.better, claim.worse, ACC, names[claim.better].by_seed(ACC),
                         names[claim.worse].by_seed(ACC), margin_for(ACC, points))  # fmt: skip
        c.p_holm, c.p_tost_holm = c.p, c.p_tost
        verdict = c.verdict(1)
        if verdict.startswith("better"):
            agrees = "**agrees**"
        elif verdict.startswith(("worse", "equivalent")):
            agrees = "**disagrees**"
        else:
            agrees = "cannot tell yet"
        lines.append(f"- {claim.source}: {claim.statement}. Here {claim.better} vs "
                     f"{claim.worse} on test accuracy: {verdict} ({c.test}, p = {c.p:.3g}): "
                     f"{agrees}.")  # fmt: skip
    return lines


def verdict_of(comparisons: list[stats.Comparison], pair: str) -> stats.Comparison | None:
    return next((c for c in comparisons if c.pair == pair), None)


def opening(pairs: list[Pair], verdicts: dict[str, list[stats.Comparison]],
            checks: list[stats.Comparison], points: float) -> list[str]:  # fmt: skip
    """A paragraph a user can act on: best, equivalent, worse, undecided, best calibrated, and
    the A/A check."""
    best = ranked(pairs)[0]
    acc = verdicts.get(ACC, [])
    m = len(acc)
    groups: dict[str, list[str]] = defaultdict(list)
    for c in acc:
        v = c.verdict(m)
        groups[v.split()[0].rstrip(":")].append(
            f"{c.pair} ({v.split(' ', 1)[1]})" if not v.startswith("equivalent") else c.pair
        )
    mean, sd = best.mean_std(ACC)
    text = [f"**Best: {best.name}**, test accuracy {mean:.4f} ± {sd:.4f} over {len(best.runs)} "
            "seeds."]  # fmt: skip
    if groups["equivalent"]:
        text.append(f"Equivalent to it within ±{points:g} accuracy points: "
                    f"{', '.join(groups['equivalent'])}.")  # fmt: skip
    if groups["worse"]:
        text.append(f"Worse: {'; '.join(groups['worse'])}.")
    if groups["better"]:
        text.append(
            f"Better (not first by mean, yet significantly): {'; '.join(groups['better'])}."
        )
    if groups["undecided"]:
        text.append(f"Undecided: {'; '.join(groups['undecided'])}.")
    calibrated = [p for p in pairs if p.values("test/nll").size]
    if calibrated:
        by_nll = min(calibrated, key=lambda p: p.mean_std("test/nll")[0])
        by_ece = min(calibrated, key=lambda p: p.mean_std("test/ece_ts")[0])
        text.append(
            f"Best calibrated: {by_nll.name} (lowest test NLL, "
            f"{by_nll.mean_std('test/nll')[0]:.4f}); after temperature scaling the "
            f"lowest ECE is {by_ece.name}'s ({by_ece.mean_std('test/ece_ts')[0]:.4f})."
        )
    if checks:
        fine = ("equivalent", "undecided")
        bad = [f"{c.pair} vs {c.reference}" for c in checks
               if not c.verdict(len(checks)).startswith(fine)]  # fmt: skip
        outcome = (
            "all came out equivalent or undecided, as they must: evidence that these verdicts "
            "are calibrated." if not bad else
            f"{len(bad)} came out different ({', '.join(bad)}): treat this setting's verdicts "
            "with caution."
        )  # fmt: skip
        text.append(f"A/A check: {len(checks)} comparisons of pairs that compute the same "
                    f"function {outcome}")  # fmt: skip
    return [" ".join(text)]


def ranked_table(pairs: list[Pair], acc: list[stats.Comparison]) -> list[str]:
    multilabel = any(p.values("test/map").size for p in pairs)
    header = ["rank", "head + loss", "seeds", "test acc", "test macro-F1"]
    header += ["test mAP"] if multilabel else []
    header += ["best val loss", "epochs", "s / run", "vs best: test", "Δ acc (95% CI)",
               "p (Holm)", "verdict"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, p in enumerate(ranked(pairs), 1):
        best_val = np.array([min(c) for c in p.val_curves if c])
        epochs = np.array([len(c) for c in p.val_curves])
        wall = np.array([(r.info.end_time - r.info.start_time) / 1000 for r in p.runs])
        row = [str(i), p.name, str(len(p.runs)), fmt(*p.mean_std(ACC)),
               fmt(*p.mean_std("test/f1_macro"))]  # fmt: skip
        row += [fmt(*p.mean_std("test/map"))] if multilabel else []
        row += [fmt(best_val.mean(), best_val.std(ddof=1) if len(best_val) > 1 else 0.0),
                f"{epochs.mean():.1f}", f"{wall.mean():.1f}"]  # fmt: skip
        c = verdict_of(acc, p.name)
        if c is None:
            row += ["—", "—", "—", "best" if i == 1 else "—"]
        else:
            row += [c.test, f"{c.diff:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}]",
                    f"{c.p_holm:.3g}", c.verdict(len(acc))]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return lines


def calibration_table(pairs: list[Pair], verdicts: dict[str, list[stats.Comparison]]) -> list[str]:
    header = ["head + loss", "NLL", "Brier", "ECE", "NLL after TS", "ECE after TS", "T",
              "NLL verdict", "ECE verdict"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in sorted(pairs, key=lambda p: p.mean_std("test/nll")[0]):
        row = [p.name, *(fmt(*p.mean_std(m)) for m in CALIBRATION)]
        for metric in ("test/nll", "test/ece"):
            c = verdict_of(verdicts.get(metric, []), p.name)
            row.append(c.verdict(len(verdicts[metric])) if c else "reference")
        lines.append("| " + " | ".join(row) + " |")
    return lines


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


def confusion_table(labels: list[str], matrix: np.ndarray) -> list[str]:
    """Counts, rows: true class, columns: predicted class (numbered as in the rows)."""
    header = ["true ↓ predicted →", *map(str, range(len(labels)))]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(labels)]
    for i, (name, row) in enumerate(zip(labels, matrix.tolist(), strict=True)):
        lines.append(f"| {i} {name} | " + " | ".join(map(str, row)) + " |")
    return lines


def per_class_table(pairs: list[Pair], client: MlflowClient) -> list[str]:
    """Test accuracy per class (recall), from each pair's confusion matrices summed over seeds."""
    rows, labels = [], None
    for p in ranked(pairs):
        confusion = summed_confusion(client, p)
        if confusion is None:
            continue
        labels, matrix = confusion
        recall = np.diag(matrix) / np.maximum(matrix.sum(1), 1)
        rows.append(f"| {p.name} | " + " | ".join(f"{r:.3f}" for r in recall) + " |")
    if labels is None:
        return []
    header = "| head + loss | " + " | ".join(labels) + " |"
    return [header, "|---|" + "---:|" * len(labels), *rows]


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


def write_csvs(pairs: list[Pair], verdicts: list[tuple[str, stats.Comparison, int]],
               out: Path) -> None:  # fmt: skip
    """``runs.csv``: one row per run (its config keys, seed, every test metric);
    ``verdicts.csv``: one row per setting, pair and metric."""
    runs = [(p, r) for p in pairs for r in p.runs]
    metrics = sorted({k for _, r in runs for k in r.data.metrics if k.startswith("test/")})
    with (out / "runs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run_id", "setting", "pair", *RUN_COLUMNS, *PARAM_COLUMNS, *metrics])
        for p, r in runs:
            writer.writerow([r.info.run_id, p.setting, p.name,
                             *(r.data.tags.get(c, "") for c in RUN_COLUMNS),
                             *(r.data.params.get(c, "") for c in PARAM_COLUMNS),
                             *(r.data.metrics.get(m, "") for m in metrics)])  # fmt: skip
    with (out / "verdicts.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["setting", "pair", "reference", "metric", "seeds", "test", "difference",
                         "ci_low", "ci_high", "p", "p_holm", "p_wilcoxon", "p_tost",
                         "p_tost_holm", "margin", "verdict"])  # fmt: skip
        for setting, c, m in verdicts:
            writer.writerow([setting, c.pair, c.reference, c.metric, c.n, c.test, c.diff,
                             c.ci_low, c.ci_high, c.p, c.p_holm, c.p_wilcoxon, c.p_tost,
                             c.p_tost_holm, c.margin, c.verdict(m)])  # fmt: skip


def write_report(
    tracking_uri: str,
    experiment: str,
    sweep: str | None,
    out: Path,
    log: bool = False,
    extra: Sequence[str] = (),
    margin: float = 0.5,
) -> Path:
    """Write ``out/REPORT.md``, its plots, ``runs.csv`` and ``verdicts.csv`` (``extra``:
    markdown lines of a closing section; ``margin``: the equivalence margin in accuracy
    points); with ``log``, also to a summary run of the sweep."""
    client = open_store(tracking_uri)
    pairs, others = load(client, experiment, sweep)
    out.mkdir(parents=True, exist_ok=True)
    scope = f"sweep `{sweep}`" if sweep else "all runs"
    lines = [
        f"# lossbench report: experiment `{experiment}`, {scope}",
        "",
        "Each pair is compared with the best pair (by mean test accuracy) over the seeds both "
        "ran: paired per seed (the same seed gives every pair the same initial weights and "
        "data order), a two-sided paired t-test (Wilcoxon's signed-rank test beside it from 6 "
        "seeds), or Welch's t-test when the seeds differ; p-values Holm-corrected over the pairs "
        f"compared, α = {stats.ALPHA}; 95% confidence intervals of the mean difference. "
        f"'equivalent' means two one-sided tests put the difference within ±{margin:g} "
        f"accuracy points (±{NLL_MARGIN} nats for NLL); 'undecided' says about how many seeds "
        "would settle it, from the observed spread. Mean ± sample std over seeds. Val loss is "
        "each pair's own loss: compare it within a pair, not across losses. Details: "
        "`verdicts.csv`, `runs.csv`.",
    ]
    all_verdicts: list[tuple[str, stats.Comparison, int]] = []
    for setting in sorted({p.setting for p in pairs}):
        group = [p for p in pairs if p.setting == setting]
        task = group[0].runs[0].data.tags.get("task", "multiclass")
        slug = setting.replace(", ", "-").replace(" ", "_").replace("/", "_")
        verdicts = {m: compare(group, m, margin) for m in VERDICT_METRICS[task]
                    if any(p.values(m).size for p in group)}  # fmt: skip
        all_verdicts += [(setting, c, len(cs)) for cs in verdicts.values() for c in cs]
        checks = same_function_checks(group, margin)
        plot_curves(group, out / f"{slug}-val-loss.png")
        plot_bars(group, BAR_METRICS, out / f"{slug}-test-metrics.png")
        lines += ["", f"## {setting}", "", *opening(group, verdicts, checks, margin), ""]
        lines += claims_checked(group, setting, margin)
        lines += ["", "### Ranked", "", *ranked_table(group, verdicts.get(ACC, [])), ""]
        lines += [f"![validation loss]({slug}-val-loss.png)", "",
                  f"![test metrics]({slug}-test-metrics.png)"]  # fmt: skip
        if any(p.values("test/nll").size for p in group):
            lines += ["", "### Calibration (test split; TS: temperature scaling fitted on "
                      "validation)", "", *calibration_table(group, verdicts)]  # fmt: skip
            top = [(p.name, bins) for p in ranked(group)[:2]
                   if (bins := summed_bins(client, p)) is not None]  # fmt: skip
            if top:
                plot_reliability(top, out / f"{slug}-reliability.png", task)
                lines += ["", f"![reliability diagrams]({slug}-reliability.png)"]
        if checks:
            lines += ["", "### A/A check: pairs that compute the same function", "",
                      "| pair | vs | Δ acc (95% CI) | verdict |", "|---|---|---|---|"]  # fmt: skip
            lines += [f"| {c.pair} | {c.reference} | {c.diff:+.4f} [{c.ci_low:+.4f}, "
                      f"{c.ci_high:+.4f}] | {c.verdict(len(checks))} |"
                      for c in checks]  # fmt: skip
        if "imbalance" in setting:
            lines += ["", "### Test accuracy per class (summed over seeds)", "",
                      *per_class_table(group, client)]  # fmt: skip
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
    write_csvs(pairs, all_verdicts, out)
    if log:
        log_summary_run(client, experiment, sweep, out)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="lossbench")
    parser.add_argument("--sweep", default=None, help="a sweep_id tag")
    parser.add_argument("--out", type=Path, default=Path("report"))
    parser.add_argument("--margin", type=float, default=0.5,
                        help="equivalence margin, accuracy points (default 0.5)")  # fmt: skip
    parser.add_argument(
        "--no-log", action="store_true", help="do not log the report to a summary MLflow run"
    )
    args = parser.parse_args(argv)
    with exit_on_user_error("lossbench.report"):
        log = not args.no_log
        path = write_report(args.tracking_uri, args.experiment, args.sweep, args.out, log,
                            margin=args.margin)  # fmt: skip
    print(path)


if __name__ == "__main__":
    main()
