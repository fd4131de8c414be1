"""``python -m lossbench.report``: which head/loss choices are equivalent, which are worse and by
how much, and how many more seeds would settle the rest.

Reads the runs of an experiment (one sweep if ``--sweep``) back from MLflow, groups the FINISHED
ones by setting (dataset, label noise, imbalance) and pair (head, loss, and the loss parameters
that vary, e.g. ``class_weight``), and writes ``DIR/REPORT.md`` with, per setting: a paragraph of
verdicts a user can act on; the pairs ranked by mean test accuracy (``--metric``: another test
score, e.g. ``map`` for multi-label sets), each compared with the best pair on it and on the
scores that compare across losses (:mod:`lossbench.report.stats`: paired over seeds, Holm-corrected,
equivalence within ±``--margin`` accuracy points); a calibration
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
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from lossbench.errors import LossbenchError, exit_on_user_error
from lossbench.report import stats
from lossbench.report.pairs import ACC, Pair, fmt, load, ranked, summed_bins, summed_confusion
from lossbench.report.plots import plot_bars, plot_confusion, plot_curves, plot_reliability
from lossbench.report.summary import REPORT_TAG, skipped_jobs
from lossbench.report.verdicts import (
    HIGHER,
    LOWER,
    MULTILABEL_ONLY,
    NAMES,
    NLL_MARGIN,
    TWO_CLASS_ONLY,
    VERDICT_METRICS,
    by_metric,
    claims_checked,
    compare,
    opening,
    same_function_checks,
    verdict_of,
)
from lossbench.tracking.mlflow_run import GROUP_SIZE_TAG, WEIGHTS
from lossbench.tracking.store import experiment_named, open_store

CALIBRATION = ("test/nll", "test/brier", "test/ece", "test/nll_ts", "test/ece_ts",
               "test/temperature")  # fmt: skip
BAR_METRICS = ("test/acc", "test/f1_macro", "test/map")
RUN_COLUMNS = ("dataset", "head", "loss", "seed", "model", "task", "sweep_id", "n_train", "n_val",
               "n_test", "test_split")  # fmt: skip
PARAM_COLUMNS = ("optimizer/lr", "trainer/max_epochs", "test_on", "dataset/noise/rate",
                 "dataset/noise/kind", "dataset/imbalance/factor", "loss/class_weight")  # fmt: skip


def ranked_table(
    pairs: list[Pair], chosen: list[stats.Comparison], rank_by: str = ACC
) -> list[str]:
    """The pairs best first by the mean of ``rank_by``, each against the best on it."""
    multilabel = any(p.values("test/map").size for p in pairs)
    shown = [ACC, "test/f1_macro", *(["test/map"] if multilabel else [])]
    shown += [rank_by] if rank_by not in shown else []
    short = rank_by.removeprefix("test/")
    header = ["rank", "head + loss", "seeds", *(NAMES.get(m, m).replace("test accuracy",
              "test acc") for m in shown)]  # fmt: skip
    header += ["best val loss", "epochs", "s / run", "vs best: test", f"Δ {short} (95% CI)",
               "p (Holm)", "verdict"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, p in enumerate(by_metric(pairs, rank_by), 1):
        best_val = np.array([min(c) for c in p.val_curves if c])
        epochs = np.array([len(c) for c in p.val_curves])
        shares = [int(r.data.tags.get(GROUP_SIZE_TAG, 1)) for r in p.runs]  # fused: a member's
        wall = np.array([(r.info.end_time - r.info.start_time) / 1000 / k
                         for r, k in zip(p.runs, shares, strict=True)])  # fmt: skip
        row = [str(i), p.name, str(len(p.runs)), *(fmt(*p.mean_std(m)) for m in shown)]
        row += [fmt(best_val.mean(), best_val.std(ddof=1) if len(best_val) > 1 else 0.0),
                f"{epochs.mean():.1f}", f"{wall.mean():.1f}"]  # fmt: skip
        c = verdict_of(chosen, p.name)
        if c is None:
            row += ["—", "—", "—", "best" if i == 1 else "—"]
        else:
            p_holm = "—" if math.isnan(c.p_holm) else f"{c.p_holm:.3g}"
            row += [c.test, diff_ci(c), p_holm, c.verdict(len(chosen))]
        lines.append("| " + " | ".join(row) + " |")
    return lines


MARKS = {"equivalent": "=", "undecided": "?", "worse": "−", "better": "+"}
MAX_GLANCE = 12  # settings (columns) in the table at a glance


def glance_table(
    settings: dict[str, tuple[list[Pair], list[stats.Comparison]]], rank_by: str = ACC
) -> list[str]:
    """Every pair (rows) in every setting (columns): its mean ``rank_by`` and its verdict against
    that setting's best (bold); rows by their mean rank over the settings they ran in, so that a
    pair that holds up across settings (noise levels, imbalance, models) comes first."""
    cells: dict[str, dict[str, str]] = {}
    ranks: dict[str, list[int]] = {}
    for setting, (group, chosen) in settings.items():
        for i, p in enumerate(by_metric(group, rank_by), 1):
            mean = p.mean_std(rank_by)[0]
            c = verdict_of(chosen, p.name)
            verdict = c.verdict(len(chosen)).split()[0].rstrip(":") if c else ""
            text = f"**{mean:.4f}**" if i == 1 else f"{mean:.4f} {MARKS.get(verdict, '')}"
            cells.setdefault(p.name, {})[setting] = text.strip()
            ranks.setdefault(p.name, []).append(i)
    names = sorted(cells, key=lambda n: (np.mean(ranks[n]), n))
    header = ["head + loss", *settings, "mean rank"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for name in names:
        row = [cells[name].get(s, "—") for s in settings]
        lines.append(f"| {name} | " + " | ".join(row) + f" | {np.mean(ranks[name]):.1f} |")
    legend = (
        f"Mean {NAMES.get(rank_by, rank_by)} per setting; **bold**: the setting's best; against "
        "it: = equivalent, ? undecided, − worse, + better (significantly, though not first by "
        "mean); — not run there. Rows by mean rank over the settings a pair ran in."
    )
    return ["## At a glance", "", legend, "", *lines]


def resampled_note(pairs: list[Pair]) -> list[str]:
    """Where the setting's seeds each carved their own split: say so, with its sizes, and how
    that changes the test."""
    runs = [r for p in pairs if p.test_share for r in p.runs]
    if not runs:
        return []
    n = {k: np.mean([int(r.data.tags[f"n_{k}"]) for r in runs]) for k in ("train", "val", "test")}
    share = max(p.test_share for p in pairs)  # the n_test/n_train its comparisons use
    return [f"Splits: each seed carved its own train/val/test split (about {n['train']:,.0f} / "
            f"{n['val']:,.0f} / {n['test']:,.0f} samples), so these verdicts hold over the choice "
            "of test set, not for one test set. The seeds' training sets overlap: the tests are "
            "Nadeau & Bengio's (2003) corrected resampled t-test, whose variance is (1/n + "
            f"n_test/n_train = {share:.3g}) × sd² instead of sd²/n: wider "
            "intervals, and a floor that more seeds do not lower.", ""]  # fmt: skip


def use_line(client: MlflowClient, tracking_uri: str, best: Pair) -> list[str]:
    """How to use the best pair: ``lossbench.predict`` on its run of lowest validation loss (a
    choice made on validation, not on the test split), where that run saved its weights."""
    val = [min(c) if c else math.inf for c in best.val_curves]
    run = best.runs[int(np.argmin(val))] if val else None
    if run is None or WEIGHTS not in {a.path for a in client.list_artifacts(run.info.run_id)}:
        return []
    seed = run.data.tags.get("seed", "?")
    return [f"To use it: `python -m lossbench.predict --tracking-uri {tracking_uri} --run "
            f"{run.info.run_id} --input FOLDER_OR_CSV --out predictions.csv` (seed {seed}, the "
            "pair's run of lowest validation loss).", ""]  # fmt: skip


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


def check_metric(metric: str, task: str | None = None, num_classes: int | None = None) -> str:
    """``metric`` as a test score's name (``map`` → ``test/map``), or one clear error; with
    ``task`` (and ``num_classes``), one that its runs record."""
    name = metric if metric.startswith("test/") else f"test/{metric}"
    if name not in (*HIGHER, *LOWER):
        allowed = ", ".join(m.removeprefix("test/") for m in (*HIGHER, *LOWER))
        raise LossbenchError(f"--metric {metric} is not a test score the report can rank by; "
                             f"it takes: {allowed}. Fix: e.g. --metric map")  # fmt: skip
    if task == "multiclass" and name in MULTILABEL_ONLY:
        raise LossbenchError(f"--metric {metric} is a multi-label score, and this dataset is "
                             "multi-class. Fix: e.g. --metric f1_macro")  # fmt: skip
    if task == "multilabel" and name in TWO_CLASS_ONLY:
        raise LossbenchError(f"--metric {metric} is a two-class set's score, and this dataset is "
                             "multi-label. Fix: e.g. --metric map")  # fmt: skip
    if task == "multiclass" and name in TWO_CLASS_ONLY and (num_classes or 2) > 2:
        raise LossbenchError(f"--metric {metric} is a two-class set's score, and this dataset has "
                             f"{num_classes} classes. Fix: e.g. --metric f1_macro")  # fmt: skip
    return name


def check_metric_recorded(pairs: list[Pair], metric: str) -> None:
    """Every setting's runs must have recorded ``metric`` (mAP, e.g., is multi-label only)."""
    for setting in sorted({p.setting for p in pairs}):
        group = [p for p in pairs if p.setting == setting]
        if not any(p.values(metric).size for p in group):
            have = sorted({m.removeprefix("test/") for p in group for r in p.runs
                           for m in r.data.metrics if m in (*HIGHER, *LOWER)})  # fmt: skip
            raise LossbenchError(f"the runs of {setting} have no {metric}; they have: "
                                 f"{', '.join(have)}. Fix: --metric one of those")  # fmt: skip


def diff_ci(c: stats.Comparison) -> str:
    """The mean difference and its 95% interval; none with one seed a side."""
    if math.isnan(c.ci_low):
        return f"{c.diff:+.4f} (no interval: one seed)"
    return f"{c.diff:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}]"


IMBALANCED = 3.0  # test class counts max/min from which accuracy is said to favour the majority


def imbalance_note(labels: list[str], matrix: np.ndarray, runs: int) -> list[str]:
    """A paragraph when the test split's classes (the row sums of the confusion matrix summed
    over ``runs`` runs) are imbalanced: accuracy then rewards the majority classes; macro-F1
    weighs each class alike."""
    counts = matrix.sum(axis=1) / runs  # the test split is the same for every seed
    low, high = int(counts.argmin()), int(counts.argmax())
    if counts[low] * IMBALANCED > counts[high]:
        return []
    return [f"The test split is imbalanced: {counts[high]:g} samples of `{labels[high]}` against "
            f"{counts[low]:g} of `{labels[low]}`. Accuracy rewards the majority classes; "
            "`--metric f1_macro` ranks by a score that weighs each class alike.", ""]  # fmt: skip


def confusion_table(labels: list[str], matrix: np.ndarray) -> list[str]:
    """Counts, rows: true class, columns: predicted class (numbered as in the rows)."""
    header = ["true ↓ predicted →", *map(str, range(len(labels)))]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(labels)]
    for i, (name, row) in enumerate(zip(labels, matrix.tolist(), strict=True)):
        label = name if name == str(i) else f"{i} {name}"  # digits' classes are their numbers
        lines.append(f"| {label} | " + " | ".join(map(str, row)) + " |")
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


def skipped_section(
    client: MlflowClient, experiment: str, sweep: str | None, reported: set[str]
) -> list[str]:
    """The skipped jobs of the sweep (of every sweep if ``sweep`` is None), from the record
    each sweep's end left in the experiment (``summary.record_skipped``): one line per reason,
    overrides shared by every listed job said once. A job skipped because its config already
    had a FINISHED run is listed only when that run is not among ``reported`` (the runs of the
    report); the others are counted: their run is averaged in."""
    records = skipped_jobs(client, experiment_named(client, experiment).experiment_id, sweep)
    listed: list[tuple[str, list[list[str]], list[str | None]]] = []  # reason, jobs, runs
    reused = 0
    for g in (g for r in records for g in r["groups"]):
        if "runs" not in g:
            listed.append((g["reason"], g["jobs"], [None] * len(g["jobs"])))
            continue
        outside = [(j, run) for j, run in zip(g["jobs"], g["runs"], strict=True)
                   if run not in reported]  # fmt: skip
        reused += len(g["jobs"]) - len(outside)
        if outside:
            listed.append((f"{g['reason']} (that run is not in this report)",
                           [j for j, _ in outside], [run for _, run in outside]))  # fmt: skip
    if not listed and not reused:
        return []
    lines = ["", "## Skipped jobs", ""]
    if listed:
        jobs = [job for _, js, _ in listed for job in js]
        common = [o for o in jobs[0] if all(o in job for job in jobs)] if len(jobs) > 1 else []
        of = "the sweep" if len(records) == 1 else f"{len(records)} sweeps"
        lines += [f"{_jobs(len(jobs), f'of {of} ')}skipped before training (no run of theirs is "
                  "averaged in)" + (f"; all with `{' '.join(common)}`" if common else "") + ":",
                  ""]  # fmt: skip
        for reason, js, runs in listed:
            own = [" ".join(o for o in job if o not in common) or "(no other override)"
                   for job in js]  # fmt: skip
            named = [f"`{o}`" + (f" (run {run})" if run else "")
                     for o, run in zip(own, runs, strict=True)]  # fmt: skip
            lines.append(f"- {reason}: " + ", ".join(named))
    if omitted := sum(r["omitted"] for r in records):
        lines.append(f"- and {omitted} more (see the sweep's closing summary)")
    if reused:
        lines += ["", f"{_jobs(reused)}not trained again: their config already had a "
                  "FINISHED run, which is averaged in above."]  # fmt: skip
    return lines


def _jobs(n: int, of: str = "") -> str:
    """'1 job <of>was ' or 'n jobs <of>were '."""
    return f"1 job {of}was " if n == 1 else f"{n} jobs {of}were "


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
    metric: str = ACC,
) -> Path:
    """Write ``out/REPORT.md``, its plots, ``runs.csv`` and ``verdicts.csv`` (``extra``:
    markdown lines of a closing section; ``margin``: the equivalence margin in accuracy
    points; ``metric``: the test score that ranks the pairs and names the best); with ``log``,
    also to a summary run of the sweep."""
    metric = check_metric(metric)
    client = open_store(tracking_uri)
    pairs, others = load(client, experiment, sweep)
    check_metric_recorded(pairs, metric)
    out.mkdir(parents=True, exist_ok=True)
    scope = f"sweep `{sweep}`" if sweep else "all runs"
    lines = [
        f"# lossbench report: experiment `{experiment}`, {scope}",
        "",
        f"Each pair is compared with the best pair (by mean {NAMES[metric]}) over the seeds both "
        "ran: paired per seed (the same seed gives every pair the same initial weights and "
        "data order), a two-sided paired t-test (Wilcoxon's signed-rank test beside it from 6 "
        "seeds), or Welch's t-test when the seeds differ (where each seed carved its own "
        "split, Nadeau & Bengio's corrected variance: see the setting); p-values Holm-corrected "
        "over the pairs "
        f"compared, α = {stats.ALPHA}; 95% confidence intervals of the mean difference. "
        f"'equivalent' means two one-sided tests put the difference within ±{margin:g} "
        f"accuracy points (±{NLL_MARGIN} nats for NLL); 'undecided' says about how many seeds "
        "would settle it, from the observed spread. Mean ± sample std over seeds. Val loss is "
        "each pair's own loss: compare it within a pair, not across losses; s / run: a run's "
        "wall time (trained side by side, its fused group's divided among the group's runs). "
        "Details: "
        "`verdicts.csv`, `runs.csv`.",
    ]
    all_verdicts: list[tuple[str, stats.Comparison, int]] = []
    glance: dict[str, tuple[list[Pair], list[stats.Comparison]]] = {}
    for setting in sorted({p.setting for p in pairs}):
        group = [p for p in pairs if p.setting == setting]
        task = group[0].runs[0].data.tags.get("task", "multiclass")
        slug = re.sub(r"[^\w.=+-]+", "_", setting.replace(", ", "-"))
        scores = dict.fromkeys([metric, *VERDICT_METRICS[task]])  # the ranking score first
        verdicts = {m: compare(group, m, margin, metric) for m in scores
                    if any(p.values(m).size for p in group)}  # fmt: skip
        all_verdicts += [(setting, c, len(cs)) for cs in verdicts.values() for c in cs]
        glance[setting] = group, verdicts.get(metric, [])
        checks = same_function_checks(group, margin)
        plot_curves(group, out / f"{slug}-val-loss.png")
        plot_bars(group, BAR_METRICS, out / f"{slug}-test-metrics.png")
        lines += ["", f"## {setting}", "", *opening(group, verdicts, checks, margin, metric), ""]
        lines += resampled_note(group)
        lines += use_line(client, tracking_uri, by_metric(group, metric)[0])
        lines += claims_checked(group, setting, margin)
        lines += ["", "### Ranked", "", *ranked_table(group, verdicts.get(metric, []), metric), ""]
        if task == "multilabel" and metric == ACC:
            lines += ["Multi-label `test acc` is exact match (every label of a sample right): a "
                      "harsh ranking; `--metric map` (or `f1_micro`, `hamming_acc`) ranks by "
                      "another score.", ""]  # fmt: skip
        best = by_metric(group, metric)[0]
        confusion = summed_confusion(client, best)
        if confusion is not None and metric == ACC:
            lines += imbalance_note(*confusion, len(best.runs))
        lines += [f"![validation loss]({slug}-val-loss.png)", "",
                  f"![test metrics]({slug}-test-metrics.png)"]  # fmt: skip
        if any(p.values("test/nll").size for p in group):
            lines += ["", "### Calibration (test split; TS: temperature scaling fitted on "
                      "validation)", "", *calibration_table(group, verdicts)]  # fmt: skip
            top = [(p.name, bins) for p in by_metric(group, metric)[:2]
                   if (bins := summed_bins(client, p)) is not None]  # fmt: skip
            if top:
                plot_reliability(top, out / f"{slug}-reliability.png", task)
                lines += ["", f"![reliability diagrams]({slug}-reliability.png)"]
        if checks:
            lines += ["", "### A/A check: pairs that compute the same function", "",
                      "| pair | vs | Δ acc (95% CI) | verdict |", "|---|---|---|---|"]  # fmt: skip
            lines += [f"| {c.pair} | {c.reference} | {diff_ci(c)} | {c.verdict(len(checks))} |"
                      for c in checks]  # fmt: skip
        if "imbalance" in setting:
            lines += ["", "### Test accuracy per class (summed over seeds)", "",
                      *per_class_table(group, client)]  # fmt: skip
        if confusion is not None:
            title = f"{best.name}: test split, {len(best.runs)} seeds summed"
            plot_confusion(*confusion, title, out / f"{slug}-confusion.png")
            lines += ["", f"### Confusion matrix of the best pair, {best.name}", "",
                      f"Test split, counts summed over its {len(best.runs)} seeds; rows: true "
                      "class, columns: predicted class.", "", *confusion_table(*confusion), "",
                      f"![confusion matrix]({slug}-confusion.png)"]  # fmt: skip
    if 1 < len(glance) <= MAX_GLANCE:
        lines[3:3] = ["", *glance_table(glance, metric)]
    elif len(glance) > MAX_GLANCE:
        lines[3:3] = ["", f"{len(glance)} settings: too many for one table at a glance; each has "
                      "its section below (`--sweep ID` reports one sweep).", ""]  # fmt: skip
    if others:
        lines += ["", "## Not averaged in", ""]
        lines += [f"- {r.info.run_name} ({r.info.run_id}): {r.info.status}"
                  f"{': ' + r.data.tags['failure'][:200] if 'failure' in r.data.tags else ''}"
                  for r in others]  # fmt: skip
    reported = {r.info.run_id for p in pairs for r in p.runs} | {r.info.run_id for r in others}
    lines += skipped_section(client, experiment, sweep, reported)
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
    parser.add_argument("--metric", default=ACC,
                        help="the test score that ranks the pairs (default acc; e.g. map, "
                        "f1_micro, f1_macro, nll)")  # fmt: skip
    parser.add_argument(
        "--no-log", action="store_true", help="do not log the report to a summary MLflow run"
    )
    args = parser.parse_args(argv)
    with exit_on_user_error("lossbench.report"):
        log = not args.no_log
        path = write_report(args.tracking_uri, args.experiment, args.sweep, args.out, log,
                            margin=args.margin, metric=args.metric)  # fmt: skip
    print(path)


if __name__ == "__main__":
    main()
