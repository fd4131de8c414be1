"""``python -m lossbench.studies.tune``: a real Optuna study per pair (hydra-optuna-sweeper), then
each pair over seeds at its own best learning rate, then the report."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from test_postgres import fresh_database, postgres_url

from conftest import TINY_OVERRIDES, TINY_SIZES, sqlite_uri
from lossbench.config import ROOT
from lossbench.report.summary import outcomes
from lossbench.studies.tune import Search, compare, split_overrides
from lossbench.studies.tune import main as tune_main
from lossbench.tracking.mlflow_run import sweep_id

PAIRS = (("softmax", "ce"), ("sigmoid", "bce_logits"))
TRIALS = 3


def test_each_pair_is_compared_at_its_own_best_lr(tmp_path: Path, tiny_data) -> None:
    uri = sqlite_uri(tmp_path / "mlflow.db")
    sweeps, out = tmp_path / "sweeps", tmp_path / "report"
    cmd = [
        sys.executable, "-m", "lossbench.studies.tune", "--n-trials", str(TRIALS), "--seeds", "1,2",
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


def study_workers(
    tmp_path: Path, data_dir: Path, storage: str, *extra: str, workers: int = 2
) -> list[subprocess.Popen[str]]:
    """``workers`` tune_lr sweeps started at once on one study in ``storage``."""
    procs = []
    for w in range(workers):
        cmd = [sys.executable, str(ROOT / "train.py"), "+experiment=tune_lr", "head=softmax",
               "loss=ce", f"tune.storage={storage}", f"tune.worker={w}", "tune.seeds=[101]",
               f"hydra.sweep.dir={tmp_path / f'worker{w}'}", f"output_roots=[{tmp_path}]",
               f"data_dir={data_dir}", f"logger.tracking_uri={sqlite_uri(tmp_path / 'mlflow.db')}",
               *TINY_OVERRIDES, *extra]  # fmt: skip
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, cwd=tmp_path))  # fmt: skip
    return procs


@pytest.fixture(params=["sqlite", "postgresql"])
def study_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty Optuna storage: a SQLite file, or a fresh database on the local PostgreSQL
    (deploy/postgres/up.sh; skipped, with the reason, where it cannot start)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'optuna.db'}"
        return
    with fresh_database(postgres_url()) as url:
        yield url


def test_two_workers_share_one_study(study_storage: str, tmp_path: Path, tiny_data) -> None:
    per_worker = 2
    procs = study_workers(tmp_path, tiny_data[0], study_storage,
                          f"hydra.sweeper.n_trials={per_worker}")  # fmt: skip
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-3000:]

    # the default study name: one study per experiment, dataset, model and pair
    study = optuna.load_study(study_name="tune_lr-fashion_mnist-mlp-softmax-ce",
                              storage=study_storage)  # fmt: skip
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(2 * per_worker))  # they add up, no number twice
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE}
    lrs = sorted(t.params["optimizer.lr"] for t in study.trials)
    assert len(set(lrs)) == len(lrs)  # the workers' samplers differ (tune.worker is the seed)

    # each trial is one MLflow run (tune.seeds=[101]) at the trial's lr, scored as Optuna saw it
    client = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    exp = client.get_experiment_by_name("tune_lr")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    assert {r.info.status for r in runs} == {"FINISHED"}
    by_lr = {float(r.data.params["optimizer/lr"]): r.data.metrics["val/acc_best"] for r in runs}
    assert np.allclose(sorted(by_lr), lrs)
    for t in study.trials:
        lr = min(by_lr, key=lambda x: abs(x - t.params["optimizer.lr"]))
        assert np.isclose(t.value, by_lr[lr])
    # the worker that ended last saw every trial: its results name the study's best
    last = max((tmp_path / f"worker{w}" / "optimization_results.yaml" for w in range(2)),
               key=lambda p: p.stat().st_mtime)  # fmt: skip
    assert np.isclose(OmegaConf.load(last).best_value, study.best_value)


@pytest.mark.parametrize(
    "storage, words",
    [("foo", "is not an Optuna storage URL"),
     ("sqlite:///no/such/folder/optuna.db", "does not exist"),
     ("postgresql://u:secret@127.0.0.1:9/x", "cannot be reached")],
)  # fmt: skip
def test_a_bad_storage_is_refused_before_anything_is_written(
    storage: str, words: str, tmp_path: Path, tiny_data
) -> None:
    (proc,) = study_workers(tmp_path, tiny_data[0], storage, workers=1)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 2, out[-3000:]
    assert out.strip().splitlines()[-1].startswith("lossbench: error: "), out[-3000:]
    assert words in out and "Traceback" not in out and "secret" not in out
    assert not (tmp_path / "mlflow.db").exists()


def test_tune_with_workers_shares_each_pairs_trials(tmp_path: Path, tiny_data) -> None:
    uri = sqlite_uri(tmp_path / "mlflow.db")
    sweeps, out = tmp_path / "sweeps", tmp_path / "report"
    # the trials per pair as the Optuna sweeper's own override: shared out like --n-trials, and
    # kept from the comparison (Hydra's basic sweeper has no n_trials)
    cmd = [
        sys.executable, "-m", "lossbench.studies.tune", "hydra.sweeper.n_trials=3",
        "--workers", "2",
        "--metric", "f1_macro",
        "--seeds", "1", "--pairs", "softmax:ce", "--dir", str(sweeps), "--out", str(out),
        f"data_dir={tiny_data[0]}", f"logger.tracking_uri={uri}", *TINY_OVERRIDES,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # the default storage beside the sweeps; the workers' shares (2 + 1) add up to n_trials
    study = optuna.load_study(study_name="tune_lr-fashion_mnist-mlp-softmax-ce",
                              storage=f"sqlite:///{sweeps / 'optuna.db'}")  # fmt: skip
    assert sorted(t.number for t in study.trials) == [0, 1, 2]
    # the pair is compared at the study's best lr, and the report says so
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tune_lr")
    runs = client.search_runs([exp.experiment_id], "tags.report_of IS NULL", max_results=100)
    of = {r.data.tags.get("sweep_id") for r in runs}
    per_worker = [sum(r.data.tags.get("sweep_id") == sweep_id(sweeps / "search" / "softmax-ce" /
                                                             f"worker{w}") for r in runs)
                  for w in (0, 1)]  # fmt: skip
    assert per_worker == [4, 2], of  # a run per trial and seed of tune.seeds (101, 102)
    compared = [r for r in runs if r.data.tags.get("sweep_id") == sweep_id(sweeps / "compare")]
    assert len(compared) == 1
    assert np.isclose(float(compared[0].data.params["optimizer/lr"]),
                      study.best_params["optimizer.lr"])  # fmt: skip
    report = (out / "REPORT.md").read_text()
    assert f"| softmax + ce | 3 | {study.best_params['optimizer.lr']:.3g} |" in report
    assert "(by mean test macro-F1)" in report  # --metric reaches the report


def test_the_sweepers_overrides_go_to_the_search_only() -> None:
    both, search_only, trials = split_overrides(
        ["dataset=digits", "hydra.sweeper.n_trials=5", "hydra.sweeper.sampler.seed=3",
         "trainer.max_epochs=2"], None,
    )  # fmt: skip
    assert both == ["dataset=digits", "trainer.max_epochs=2"]
    assert search_only == ["hydra.sweeper.sampler.seed=3"]
    assert trials == 5
    assert split_overrides(["++hydra.sweeper.n_trials=4"], 4)[2] == 4  # the same count twice
    assert split_overrides([], 7) == ([], [], 7)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--n-trials", "3", "hydra.sweeper.n_trials=5"], "both set the trials per pair"),
        (["hydra.sweeper.n_trials=0"], "a whole number above 0"),
        (["hydra.sweeper.n_trials=many"], "a whole number above 0"),
        (["--metric", "map", "dataset=digits"], "is a multi-label score"),
        (["--metric", "auroc", "dataset=yeast"], "is a two-class set's score"),
        (["--metric", "ap", "dataset=digits"], "this dataset has 10 classes"),
        (["--metric", "speed"], "is not a test score the report can rank by"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(
    argv: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        tune_main(["--dir", str(tmp_path / "sweeps"), *argv])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert words in err and "Fix:" in err and "Traceback" not in err
    assert not (tmp_path / "sweeps").exists()  # nothing started


def test_the_comparison_skips_the_cells_it_did_not_tune(tmp_path: Path, tiny_data) -> None:
    """Tuned: softmax + ce and sigmoid + focal. The comparison's grid (heads x losses) also
    holds softmax + focal, valid but not tuned: skipped (it used to fail on its missing lr),
    and sigmoid + ce, not a valid pair: skipped."""
    found = [Search("softmax", "ce", tmp_path, lr=0.002), Search("sigmoid", "focal", tmp_path,
                                                                 lr=0.004)]  # fmt: skip
    uri = sqlite_uri(tmp_path / "mlflow.db")
    sweep, code = compare(
        found,
        "1",
        tmp_path,
        [f"data_dir={tiny_data[0]}", f"logger.tracking_uri={uri}", *TINY_OVERRIDES],
    )
    assert code == 0
    jobs = outcomes(tmp_path / "compare")
    by_pair = {tuple(o.split("=")[1] for o in j["overrides"] if o.startswith(("head=", "loss=")))
               : j for j in jobs}  # fmt: skip
    assert by_pair[("softmax", "focal")]["status"] == "SKIPPED"
    assert "was not tuned" in by_pair[("softmax", "focal")]["reason"]
    assert by_pair[("sigmoid", "ce")]["status"] == "SKIPPED"
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("tune_lr").experiment_id],
                              f"tags.sweep_id = '{sweep}'")  # fmt: skip
    lrs = {(r.data.tags["head"], r.data.tags["loss"]): float(r.data.params["optimizer/lr"])
           for r in runs}  # fmt: skip
    assert lrs == {("softmax", "ce"): 0.002, ("sigmoid", "focal"): 0.004}
