"""The report on small real sweeps: rows, paired differences, Holm-adjusted p-values and CIs
recomputed here from the store with scipy; the A/A check; the CSVs; the plots; skipped jobs.
And each verdict kind in a constructed case."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from scipy import stats as scipy_stats

from conftest import compose_cfg, run_train, sqlite_uri
from lossbench.report import stats
from lossbench.report.write import main as report_main
from lossbench.report.write import write_report
from lossbench.tracking.mlflow_run import sweep_id
from lossbench.training import run


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_data) -> Path:
    """Multi-label, with invalid pairs skipped: 2 valid pairs × 2 seeds."""
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


@pytest.fixture(scope="module")
def paired_sweep(tmp_path_factory, tiny_data) -> tuple[Path, Path]:
    """Digits, five valid pairs × seeds 1..6 (seed-matched); ce and nll compute one function.
    Trained side by side (the fused launcher: its runs equal sequential ones, test_fused)."""
    tmp = tmp_path_factory.mktemp("paired")
    proc = run_train(
        tmp, tiny_data[0], "dataset=digits", "head=softmax,sigmoid",
        "loss=ce,nll,brier,bce_logits", "seed=1,2,3,4,5,6", "trainer.max_epochs=2",
        "trainer.accelerator=cpu", "progress_bar=log", "optimizer.lr=0.003",
        "hydra/launcher=fused", multirun=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp / "rep"
    write_report(sqlite_uri(tmp / "mlflow.db"), "lossbench", None, out)
    return tmp, out


def rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_paired_verdicts_recomputed_from_the_store(paired_sweep) -> None:
    tmp, out = paired_sweep
    client = MlflowClient(sqlite_uri(tmp / "mlflow.db"))
    runs = client.search_runs(["1"], "tags.report_of IS NULL", max_results=100)
    acc: dict[str, dict[int, float]] = {}
    for r in runs:
        name = f"{r.data.tags['head']} + {r.data.tags['loss']}"
        acc.setdefault(name, {})[int(r.data.tags["seed"])] = r.data.metrics["test/acc"]
    best = max(acc, key=lambda k: np.mean(list(acc[k].values())))
    others = [k for k in acc if k != best]
    verdicts = [v for v in rows(out / "verdicts.csv") if v["metric"] == "test/acc"]
    assert {v["pair"] for v in verdicts} == set(others) and {v["reference"] for v in verdicts} == {
        best}  # fmt: skip
    assert len({r.data.tags["test_split"] for r in runs}) == 1  # one fixed test split
    ps = {}
    for name in others:
        d = np.array([acc[name][s] - acc[best][s] for s in range(1, 7)])
        v = next(v for v in verdicts if v["pair"] == name)
        assert v["test"] == "paired t" and int(v["seeds"]) == 6
        assert float(v["difference"]) == pytest.approx(d.mean())
        half = scipy_stats.t.ppf(0.975, 5) * d.std(ddof=1) / np.sqrt(6)
        assert float(v["ci_low"]) == pytest.approx(d.mean() - half)
        assert float(v["ci_high"]) == pytest.approx(d.mean() + half)
        if not d.any():  # the same function, the same seeds: identical runs (ce and nll)
            ps[name] = 1.0
            assert float(v["p"]) == 1.0 and float(v["p_wilcoxon"]) == 1.0
            continue
        ps[name] = scipy_stats.ttest_rel([acc[name][s] for s in range(1, 7)],
                                         [acc[best][s] for s in range(1, 7)]).pvalue  # fmt: skip
        assert float(v["p"]) == pytest.approx(ps[name])
        assert float(v["p_wilcoxon"]) == pytest.approx(scipy_stats.wilcoxon(d).pvalue)
    order = sorted(ps, key=ps.get)  # Holm by hand: (m - rank) p, running maximum
    running, m = 0.0, len(order)
    for rank, name in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[name]))
        v = next(v for v in verdicts if v["pair"] == name)
        assert float(v["p_holm"]) == pytest.approx(running)
    text = (out / "REPORT.md").read_text()
    assert f"**Best: {best}**" in text
    # s / run: trained side by side, a run's share of its fused group's wall time
    group = [r for r in runs if f"{r.data.tags['head']} + {r.data.tags['loss']}" == best]
    share = [(r.info.end_time - r.info.start_time) / 1000 / int(r.data.tags["fused_group_size"])
             for r in group]  # fmt: skip
    row = next(line for line in text.splitlines() if line.startswith(f"| 1 | {best} |"))
    assert float(row.split("|")[8]) == pytest.approx(np.mean(share), abs=0.051)
    for v in verdicts:
        row = next(line for line in text.splitlines() if line.startswith("| ") and
                   f"| {v['pair']} |" in line and "paired t" in line)  # fmt: skip
        assert v["verdict"] in row


def test_same_function_pairs_come_out_equivalent_or_undecided(paired_sweep) -> None:
    _, out = paired_sweep
    text = (out / "REPORT.md").read_text()
    section = text.split("### A/A check")[1]
    line = next(x for x in section.splitlines() if x.startswith("| softmax + ce | softmax + nll"))
    assert "equivalent" in line or "undecided" in line
    assert "A/A check: 1 comparisons of pairs that compute the same function all came out" in text


def test_csvs_calibration_and_reliability(paired_sweep) -> None:
    tmp, out = paired_sweep
    runs = rows(out / "runs.csv")
    assert len(runs) == 5 * 6 and {r["seed"] for r in runs} == {str(s) for s in range(1, 7)}
    assert all(r["test/acc"] and r["test/nll"] and r["test/ece_ts"] for r in runs)
    metrics = {v["metric"] for v in rows(out / "verdicts.csv")}
    assert {"test/acc", "test/nll", "test/ece", "test/brier"} <= metrics
    text = (out / "REPORT.md").read_text()
    assert "### Calibration" in text and "NLL after TS" in text
    assert (out / "digits-reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert "The test split is imbalanced" not in text  # digits' classes: 33 to 37 test images


def test_the_report_names_the_run_to_use(paired_sweep) -> None:
    """The best pair's run of lowest validation loss (recomputed from the store), with the
    predict command that loads it."""
    tmp, out = paired_sweep
    text = (out / "REPORT.md").read_text()
    best = re.search(r"\*\*Best: (\w+) \+ (\w+)\*\*", text).groups()
    uri = sqlite_uri(tmp / "mlflow.db")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("lossbench").experiment_id
    runs = [r for r in client.search_runs([experiment])
            if (r.data.tags.get("head"), r.data.tags.get("loss")) == best]  # fmt: skip
    assert len(runs) == 6
    val = {r.info.run_id: min(m.value for m in client.get_metric_history(r.info.run_id, "val/loss"))
           for r in runs}  # fmt: skip
    chosen = min(val, key=val.get)
    assert (f"To use it: `python -m lossbench.predict --tracking-uri {uri} --run {chosen} "
            "--input FOLDER_OR_CSV --out predictions.csv`") in text  # fmt: skip


def test_an_imbalanced_test_split_is_pointed_out(tmp_path: Path) -> None:
    """A table whose classes are 85% / 15%: the report says so beside the accuracy ranking,
    with the counts of its confusion matrix; not under --metric f1_macro."""
    import pandas as pd

    rng = np.random.default_rng(0)
    label = (rng.random(400) < 0.15).astype(int)
    pd.DataFrame({"u": rng.normal(size=400) + 2 * label, "v": rng.normal(size=400),
                  "y": np.where(label == 1, "rare", "common")}).to_csv(tmp_path / "t.csv",
                                                                       index=False)  # fmt: skip
    uri = sqlite_uri(tmp_path / "mlflow.db")
    for seed in (1, 2):  # the note counts one test split, not the seeds' sum
        run.train(compose_cfg(["dataset=table", f"dataset.path={tmp_path / 't.csv'}",
                               "dataset.label_column=y", "trainer.max_epochs=1",
                               "trainer.accelerator=cpu", "progress_bar=log", f"seed={seed}",
                               f"logger.tracking_uri={uri}"], tmp_path / f"run{seed}"))  # fmt: skip
    text = write_report(uri, "lossbench", None, tmp_path / "acc").read_text()
    client = MlflowClient(uri)
    found, _ = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id],
                                  "tags.report_of IS NULL")  # fmt: skip
    saved = client.download_artifacts(found.info.run_id, "confusion_matrix.json", str(tmp_path))
    common, rare = np.array(json.loads(Path(saved).read_text())["matrix"]).sum(axis=1)
    assert common > 3 * rare
    (note,) = [line for line in text.splitlines() if "The test split is imbalanced" in line]
    assert f"{common} samples of `common` against {rare} of `rare`" in note
    assert "--metric f1_macro" in note
    by_f1 = write_report(uri, "lossbench", None, tmp_path / "f1", metric="f1_macro").read_text()
    assert "The test split is imbalanced" not in by_f1


def test_a_seed_gives_every_pair_the_same_start_and_batches(tmp_path) -> None:
    """The pairing's premise: with one seed, two pairs start from the same weights and see the
    same batches in the same order (same model)."""
    built = []
    for head, loss in (("softmax", "ce"), ("sigmoid", "bce_logits")):
        cfg = compose_cfg(["dataset=digits", f"head={head}", f"loss={loss}", "seed=5",
                           f"logger.tracking_uri={sqlite_uri(tmp_path / 'm.db')}"],
                          tmp_path / head)  # fmt: skip
        built.append(run._build(cfg, ()))
    a, b = built
    for (ka, va), (kb, vb) in zip(a.module.model.state_dict().items(),
                                  b.module.model.state_dict().items(), strict=True):  # fmt: skip
        assert ka == kb and torch.equal(va, vb)
    batches = [[y for _, y in j.data.train_dataloader()] for j in built]
    assert all(torch.equal(x, y) for x, y in zip(*batches, strict=True))


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


def test_a_job_whose_config_has_a_run_is_reported_by_that_run(tmp_path: Path, tiny_data) -> None:
    """A second sweep trains only what the first did not (softmax + nll); its ce job is skipped,
    naming the first sweep's run. The report on all runs averages that run in and says the job
    was not trained again; the report on the second sweep alone names it as outside."""
    common = ("dataset=digits", "trainer.max_epochs=1", "trainer.accelerator=cpu",
              "progress_bar=log", "seed=1")  # fmt: skip
    for losses, folder in (("ce", "first"), ("ce,nll", "second")):
        proc = run_train(tmp_path, tiny_data[0], *common, f"loss={losses}", multirun=True,
                         sweep_dir=folder)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    uri = sqlite_uri(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    runs = {r.data.tags["loss"]: r for r in client.search_runs(["1"], max_results=10)}
    assert set(runs) == {"ce", "nll"}
    assert runs["ce"].data.tags["sweep_id"] == sweep_id(tmp_path / "first")

    every = write_report(uri, "lossbench", None, tmp_path / "all").read_text()
    assert "| softmax + ce | 1 |" in every and "| softmax + nll | 1 |" in every
    # one seed a side: no test can be made, and the report says so (it used to stop here)
    (row,) = [x for x in every.splitlines() if x.startswith("| 2 | softmax + ")]
    assert "(no interval: one seed) | — | undecided: one seed a side, no spread yet" in row
    section = every.split("## Skipped jobs")[1]
    assert "1 job was not trained again: their config already had a FINISHED run" in section
    assert "skipped before training" not in section

    second = sweep_id(tmp_path / "second")
    alone = write_report(uri, "lossbench", second, tmp_path / "second-report").read_text()
    assert "| softmax + ce |" not in alone and "| softmax + nll | 1 |" in alone
    section = alone.split("## Skipped jobs")[1]
    assert "1 job of the sweep was skipped before training" in section
    (line,) = [x for x in section.splitlines() if x.startswith("- ")]
    assert line.startswith("- this config already has a FINISHED run; rerun=true trains it again "
                           "(that run is not in this report): ")  # fmt: skip
    assert f"loss=ce` (run {runs['ce'].info.run_id})" in line
    assert "not trained again" not in section


def test_report_rows_means_stds_and_plots(sweep: Path) -> None:
    report = write_report(sqlite_uri(sweep / "mlflow.db"), "lossbench", None, sweep / "rep", True)
    text = report.read_text()
    client = MlflowClient(sqlite_uri(sweep / "mlflow.db"))
    runs = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    (summary,) = [r for r in runs if "report_of" in r.data.tags]
    assert {a.path for a in client.list_artifacts(summary.info.run_id, "report")} >= {
        "report/REPORT.md", "report/multilabel-val-loss.png", "report/runs.csv",
        "report/verdicts.csv"}  # fmt: skip
    runs = [r for r in runs if r is not summary]
    assert len(runs) == 4
    acc = {}
    for loss in ("bce_logits", "focal"):
        mine = [r for r in runs if r.data.tags["loss"] == loss]
        acc[loss] = np.array([r.data.metrics["test/acc"] for r in mine])
        f1 = np.array([r.data.metrics["test/f1_macro"] for r in mine])
        row = next(line for line in text.splitlines()
                   if re.match(rf"\| \d \| sigmoid \+ {loss} \|", line))  # fmt: skip
        assert f"{acc[loss].mean():.4f} ± {acc[loss].std(ddof=1):.4f}" in row
        assert f"{f1.mean():.4f} ± {f1.std(ddof=1):.4f}" in row
        assert "| 2 |" in row  # seeds
    ranked = [re.match(r"\| \d \| sigmoid \+ (\w+) \|", line).group(1)
              for line in text.splitlines() if re.match(r"\| \d \| sigmoid \+ ", line)]  # fmt: skip
    assert ranked == sorted(acc, key=lambda k: -acc[k].mean())
    assert "## multilabel" in text and "test mAP" in text
    assert "Multi-label `test acc` is exact match" in text  # and how to rank by another score
    for png in ("multilabel-val-loss.png", "multilabel-test-metrics.png"):
        assert (sweep / "rep" / png).read_bytes()[:4] == b"\x89PNG"
        assert f"]({png})" in text


@pytest.mark.parametrize(("metric", "label"), [("map", "test mAP"), ("nll", "test NLL")])
def test_report_ranks_by_the_metric_asked(sweep: Path, metric: str, label: str) -> None:
    """--metric map ranks the pairs by mean test mAP (nll: lowest first), names the best by it
    and compares each pair with that best on it, paired per seed."""
    uri = sqlite_uri(sweep / "mlflow.db")
    out = sweep / f"rep-{metric}"
    text = write_report(uri, "lossbench", None, out, metric=metric).read_text()
    client = MlflowClient(uri)
    runs = client.search_runs(["1"], "tags.report_of IS NULL", max_results=100)
    by: dict[str, dict[int, float]] = {}
    for r in runs:
        by.setdefault(r.data.tags["loss"], {})[int(r.data.tags["seed"])] = r.data.metrics[
            f"test/{metric}"]  # fmt: skip
    means = {loss: np.mean(list(v.values())) for loss, v in by.items()}
    order = sorted(means, key=lambda k: means[k] if metric == "nll" else -means[k])
    ranked = [re.match(r"\| \d \| sigmoid \+ (\w+) \|", line).group(1)
              for line in text.splitlines() if re.match(r"\| \d \| sigmoid \+ ", line)]  # fmt: skip
    assert ranked == order
    best, other = order
    assert f"**Best: sigmoid + {best}**, {label} {means[best]:.4f} ± " in text
    assert f"| Δ {metric} (95% CI) |" in text
    assert "Multi-label `test acc` is exact match" not in text
    d = np.array([by[other][s] - by[best][s] for s in (1, 2)])
    (row,) = [x for x in text.splitlines() if x.startswith(f"| 2 | sigmoid + {other} |")]
    assert f"| paired t | {d.mean():+.4f} [" in row
    (v,) = [v for v in rows(out / "verdicts.csv") if v["metric"] == f"test/{metric}"]
    assert (v["pair"], v["reference"]) == (f"sigmoid + {other}", f"sigmoid + {best}")
    assert float(v["difference"]) == pytest.approx(d.mean())


def test_a_metric_the_report_cannot_rank_by_is_refused(
    sweep: Path, paired_sweep, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [(sweep, "bogus", "is not a test score the report can rank by"),
             (paired_sweep[0], "map", "have no test/map")]  # fmt: skip
    for store, metric, words in cases:
        out = tmp_path / metric
        with pytest.raises(SystemExit) as stopped:
            report_main(["--tracking-uri", sqlite_uri(store / "mlflow.db"), "--metric", metric,
                         "--out", str(out)])  # fmt: skip
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert words in err and "Fix:" in err and "Traceback" not in err
        assert not out.exists()


def verdict(x: dict, ref: dict, margin: float = 0.005, m: int = 1) -> str:
    c = stats.paired("a", "ref", "test/acc", x, ref, margin)
    stats.adjust([c])
    return c.verdict(m)


REF = {s: 0.90 + 0.002 * ((s * 7) % 5) for s in range(1, 9)}  # a seed-to-seed spread


def test_each_verdict_kind_in_a_constructed_case() -> None:
    shift = {s: v - 0.03 + 0.001 * (s % 3) for s, v in REF.items()}
    assert verdict(shift, REF).startswith("worse by 0.028")
    better = {s: v + 0.02 + 0.001 * (s % 2) for s, v in REF.items()}
    assert verdict(better, REF).startswith("better by 0.02")
    same = {s: v + 0.0005 * (-1) ** s for s, v in REF.items()}
    assert verdict(same, REF) == "equivalent within ±0.005"
    noisy = {s: v + 0.01 * (-1) ** s + 0.004 for s, v in list(REF.items())[:3]}
    undecided = verdict(noisy, {s: REF[s] for s in noisy})
    assert re.fullmatch(r"undecided: about \d+ seeds needed", undecided), undecided
    assert int(undecided.split()[2]) > 3


def test_unpaired_seeds_fall_back_to_welch() -> None:
    x = {11: 0.80, 12: 0.82, 13: 0.81}
    c = stats.paired("a", "ref", "test/acc", x, REF, 0.005)
    assert c.test == "Welch"
    want = scipy_stats.ttest_ind(list(x.values()), list(REF.values()), equal_var=False).pvalue
    assert c.p == pytest.approx(want)


@pytest.mark.parametrize("x", [{1: 0.80}, {11: 0.80, 12: 0.82}])
def test_one_seed_a_side_gives_no_test_and_says_so(x: dict[int, float]) -> None:
    """One value on one side (a pair run with one seed, or the best pair with one): Welch's
    test needs a variance on each side, so there is no p-value and no interval."""
    ref = {1: 0.85}
    c = stats.paired("a", "ref", "test/acc", x, ref, 0.005)
    assert c.test == "Welch" and c.n == 1
    assert c.diff == pytest.approx(np.mean(list(x.values())) - 0.85)
    assert np.isnan(c.p) and np.isnan(c.ci_low) and np.isnan(c.ci_high) and np.isnan(c.p_tost)
    stats.adjust([c])
    assert c.verdict(1) == "undecided: one seed a side, no spread yet: run more seeds"


def test_resampled_splits_use_nadeau_bengios_corrected_resampled_t_test() -> None:
    """Nadeau & Bengio (2003), eq. for the corrected resampled t-test: over J resamples with
    n1 training and n2 test samples, t = d̄ / sqrt((1/J + n2/n1) · σ̂²), J − 1 degrees of
    freedom (σ̂² the sample variance of the differences d_j)."""
    x = {s: v + 0.004 + 0.003 * (-1) ** s for s, v in REF.items()}
    n1, n2 = 1200, 300
    c = stats.paired("a", "ref", "test/acc", x, REF, 0.005, test_share=n2 / n1)
    d = np.array([x[s] - REF[s] for s in REF])
    J = len(d)
    se = np.sqrt((1 / J + n2 / n1) * d.var(ddof=1))
    assert c.test == "corrected t" and c.n == J
    assert c.p == pytest.approx(2 * scipy_stats.t.sf(abs(d.mean()) / se, J - 1))
    half = scipy_stats.t.ppf(0.975, J - 1) * se
    assert (c.ci_low, c.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert np.isnan(c.p_wilcoxon)  # it too assumes independent differences
    fixed = stats.paired("a", "ref", "test/acc", x, REF, 0.005)  # one test split: ttest_rel
    assert fixed.test == "paired t" and fixed.p < c.p
    assert fixed.p == pytest.approx(
        scipy_stats.ttest_rel(list(x.values()), list(REF.values())).pvalue
    )
    # the variance's floor (n2/n1) σ̂² does not shrink with seeds: below it, seeds cannot settle
    stats.adjust([c])
    assert c.verdict(1).startswith("undecided: more seeds alone cannot settle it"), c.verdict(1)
    fixed.p_holm = fixed.p_tost_holm = 1.0
    assert re.fullmatch(r"undecided: about \d+ seeds needed", fixed.verdict(1))
    far = {s: v + 0.03 for s, v in x.items()}
    assert stats.paired("a", "ref", "test/acc", far, REF, 0.005, test_share=n2 / n1).p < 0.05
    # seeds needed: the first k whose corrected interval would clear the observed difference
    k = stats.seeds_needed(0.01, 0.01, 0.005, 1, 3, test_share=0.02)
    assert k is not None and k > 3
    quantiles = [scipy_stats.t.ppf(1 - 0.05 / 2, j - 1) + scipy_stats.t.ppf(0.8, j - 1)
                 for j in (k - 1, k)]  # fmt: skip
    assert quantiles[0] * 0.01 * np.sqrt(1 / (k - 1) + 0.02) > 0.01
    assert quantiles[1] * 0.01 * np.sqrt(1 / k + 0.02) <= 0.01


def test_splits_resampled_per_seed_are_one_setting_tested_with_the_correction(
    tmp_path: Path,
) -> None:
    """``dataset.split_seed='${seed}'``: each seed carves its own digits split. The runs' tags
    say so (a test-split fingerprint per seed, shared by the pairs of that seed; the split
    sizes); the report keeps the seeds in one setting (the split seed is the seed's, not a
    setting) and compares the pairs with the corrected resampled t-test, recomputed here."""
    uri = sqlite_uri(tmp_path / "mlflow.db")
    for loss in ("ce", "focal"):
        for seed in (1, 2, 3):
            overrides = [
                "dataset=digits",
                "dataset.split_seed=${seed}",
                f"loss={loss}",
                f"seed={seed}",
                "trainer.max_epochs=1",
                "save_weights=false",
                "trainer.accelerator=cpu",
                "progress_bar=log",
                f"logger.tracking_uri={uri}",
                "logger.experiment_name=resampled",
            ]
            run.train(compose_cfg(overrides, tmp_path / f"{loss}-{seed}"))  # fmt: skip
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("resampled").experiment_id
    runs = client.search_runs([experiment], "tags.report_of IS NULL")
    tags = {(r.data.tags["loss"], int(r.data.tags["seed"])): r.data.tags for r in runs}
    acc = {
        (r.data.tags["loss"], int(r.data.tags["seed"])): r.data.metrics["test/acc"] for r in runs
    }
    assert all(tags["ce", s]["test_split"] == tags["focal", s]["test_split"] for s in (1, 2, 3))
    assert len({tags["ce", s]["test_split"] for s in (1, 2, 3)}) == 3
    n_val, n_test = round(0.1 * 1797), round(0.2 * 1797)  # conf/dataset/digits.yaml's sizes
    n = [(int(t["n_train"]), int(t["n_val"]), int(t["n_test"])) for t in tags.values()]
    assert set(n) == {(1797 - n_val - n_test, n_val, n_test)}
    text = write_report(uri, "resampled", None, tmp_path / "rep").read_text()
    assert [line for line in text.splitlines() if line.startswith("## ")] == ["## digits"]
    assert "Splits: each seed carved its own train/val/test split" in text
    listed = rows(tmp_path / "rep" / "runs.csv")
    assert {(r["n_train"], r["n_test"], r["test_split"]) for r in listed} == {
        (t["n_train"], t["n_test"], t["test_split"]) for t in tags.values()}  # fmt: skip
    best = max(("ce", "focal"), key=lambda loss: np.mean([acc[loss, s] for s in (1, 2, 3)]))
    other = "focal" if best == "ce" else "ce"
    v = next(v for v in rows(tmp_path / "rep" / "verdicts.csv") if v["metric"] == "test/acc")
    d = np.array([acc[other, s] - acc[best, s] for s in (1, 2, 3)])
    se = np.sqrt((1 / 3 + n_test / (1797 - n_val - n_test)) * d.var(ddof=1))
    assert v["test"] == "corrected t" and v["pair"] == f"softmax + {other}"
    assert float(v["p"]) == pytest.approx(2 * scipy_stats.t.sf(abs(d.mean()) / se, 2))
    assert float(v["ci_high"]) == pytest.approx(d.mean() + scipy_stats.t.ppf(0.975, 2) * se)


def test_holm_matches_its_definition() -> None:
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    got = stats.holm(p)
    # sorted: 0.005 (×4), 0.01 (×3), 0.03 (×2), 0.04 (×1), running max
    assert got[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and np.isnan(got[4])


def test_a_parameter_older_runs_lack_does_not_split_a_pair(tmp_path: Path) -> None:
    """Runs recorded before ``head.binary_outputs`` existed share the pair of newer runs that
    record it; a value that really varies names the pairs (summary table and report)."""
    from lossbench.report import summary

    client = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    experiment = client.create_experiment("older")

    def record(params: dict[str, str], seed: int) -> str:
        tags = {"dataset": "digits", "head": "sigmoid", "loss": "focal", "seed": str(seed)}
        run_id = client.create_run(experiment, tags=tags).info.run_id
        for k, v in {"loss/gamma": "2.0", **params}.items():
            client.log_param(run_id, k, v)
        client.set_terminated(run_id)
        return run_id

    old = record({}, 1)
    new = [record({"head/binary_outputs": "1"}, s) for s in (2, 3)]
    runs = [client.get_run(i) for i in (old, *new)]
    assert summary.variants(runs) == {old: "", new[0]: "", new[1]: ""}
    other = client.get_run(record({"head/binary_outputs": "2", "loss/gamma": "1.0"}, 4))
    found = summary.variants([*runs, other])
    assert found[old] == "gamma=2.0" and found[new[0]] == "gamma=2.0, binary_outputs=1"
    assert found[other.info.run_id] == "gamma=1.0, binary_outputs=2"


def test_at_a_glance_puts_every_pair_of_every_setting_in_one_table(
    tmp_path: Path, monkeypatch
) -> None:
    """Runs recorded (no training): a clean and a noisy setting. The table's cells are each
    pair's mean test accuracy and its verdict there (as the setting's own section says); rows by
    mean rank; a pair not run in a setting shows —. A one-setting report has no such table."""
    uri = sqlite_uri(tmp_path / "mlflow.db")
    client = MlflowClient(uri)
    experiment = client.create_experiment("glance")
    accs = {
        "": {"ce": [0.950, 0.952, 0.948], "focal": [0.9495, 0.951, 0.948],
             "mae": [0.80, 0.81, 0.79], "hinge": [0.70, 0.72, 0.71]},
        "0.4": {"ce": [0.50, 0.52, 0.51], "focal": [0.60, 0.69, 0.55], "mae": [0.70, 0.71, 0.69]},
    }  # fmt: skip
    for rate, by_loss in accs.items():
        for loss, values in by_loss.items():
            for seed, acc in enumerate(values, 1):
                tags = {"dataset": "digits", "head": "softmax", "loss": loss, "seed": str(seed)}
                run_id = client.create_run(experiment, tags=tags).info.run_id
                client.log_param(run_id, "dataset/noise/rate", rate or "0.0")
                client.log_metric(run_id, "test/acc", acc)
                client.set_terminated(run_id)
    text = write_report(uri, "glance", None, tmp_path / "rep").read_text()
    table = text.split("## At a glance")[1].split("\n## ")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| softmax")]  # fmt: skip
    assert rows == [
        ["softmax + ce", "**0.9500**", "0.5100 −", "2.0"],
        ["softmax + focal", "0.9495 =", "0.6133 ?", "2.0"],
        ["softmax + mae", "0.8000 −", "**0.7000**", "2.0"],
        ["softmax + hinge", "0.7100 −", "—", "4.0"],
    ]
    noisy = text.split("## digits, symmetric noise 0.4")[1]
    assert "Worse: softmax + ce" in noisy and "Undecided: softmax + focal" in noisy
    client.create_experiment("single")
    single = client.get_experiment_by_name("single").experiment_id
    for seed in (1, 2):
        tags = {"dataset": "digits", "head": "softmax", "loss": "ce", "seed": str(seed)}
        run_id = client.create_run(single, tags=tags).info.run_id
        client.log_metric(run_id, "test/acc", 0.9 + seed / 100)
        client.set_terminated(run_id)
    assert "## At a glance" not in write_report(uri, "single", None, tmp_path / "s").read_text()
    from lossbench.report import write

    monkeypatch.setattr(write, "MAX_GLANCE", 1)  # more settings than one table shows
    text = write_report(uri, "glance", None, tmp_path / "many").read_text()
    assert "## At a glance" not in text and "2 settings: too many for one table" in text
