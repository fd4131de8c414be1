"""summary, report and ui read a store: a typo (store, experiment, sweep) exits 2 naming what
exists and creates nothing; the summary shows training runs only, with the multi-label metrics;
a sweep's end counts failed jobs and exits non-zero, also when its own table fails."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from rich.console import Console

from conftest import run_train, sqlite_uri
from lossbench.report import summary, write
from lossbench.report.summary import OUTCOME, SweepSummary, unfinished_lines
from lossbench.tracking import ui
from lossbench.tracking.store import prepare_store


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_data) -> tuple[Path, str]:
    """A real sweep of 2 multi-label runs and the report of it (a summary run): (db, sweep id)."""
    tmp = tmp_path_factory.mktemp("read")
    proc = run_train(
        tmp, tiny_data[0], "dataset=multilabel", "dataset.n_samples=300", "dataset.val_size=60",
        "dataset.test_size=60", "head=sigmoid", "loss=bce_logits", "seed=1,2",
        "trainer.max_epochs=1", "trainer.accelerator=cpu", "progress_bar=log",
        multirun=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(sqlite_uri(tmp / "mlflow.db"))
    (sweep,) = {r.data.tags["sweep_id"] for r in client.search_runs(["1"])}
    write.write_report(sqlite_uri(tmp / "mlflow.db"), "lossbench", sweep, tmp / "rep", log=True)
    return tmp / "mlflow.db", sweep


def exits_2(main, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_summary_shows_training_runs_with_multilabel_metrics(store, capsys) -> None:
    db, sweep = store
    summary.main(["--tracking-uri", sqlite_uri(db), "--experiment", "lossbench"])
    out = capsys.readouterr().out
    assert "2 runs of experiment" in out and "report-" not in out
    header = next(line for line in out.splitlines() if " dataset " in line)
    for column in ("acc", "hamming_acc", "f1_micro", "map"):
        assert f" {column} " in f"{header} "
    assert " stress " not in header and " variant " not in header  # no run has them
    assert "multi-label acc: exact match" in out


@pytest.mark.parametrize("command", [summary.main, write.main, ui.main])
def test_a_missing_store_is_refused_and_not_created(command, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "mlfow.db"
    (tmp_path / "mlflow.db").write_bytes(b"")  # a store nearby, which the message names
    err = exits_2(command, ["--tracking-uri", sqlite_uri(missing)], capsys)
    assert f"there is no tracking store sqlite:///{missing}" in err
    assert str(tmp_path / "mlflow.db") in err and not missing.exists()


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.db").write_text("my notes")
    err = exits_2(ui.main, ["--tracking-uri", sqlite_uri(tmp_path / "notes.db")], capsys)
    assert "is not an SQLite database" in err
    assert (tmp_path / "notes.db").read_text() == "my notes"


@pytest.mark.parametrize("command", [summary.main, write.main])
def test_an_unknown_experiment_or_sweep_names_those_that_exist(
    command, store, tmp_path: Path, capsys
) -> None:
    db, sweep = store
    client = MlflowClient(sqlite_uri(db))
    before = len(client.search_runs(["1"])), len(client.search_experiments())
    out = ["--out", str(tmp_path / "r")] if command is write.main else []
    err = exits_2(command, ["--tracking-uri", sqlite_uri(db), "--experiment", "lossbnech", *out],
                  capsys)  # fmt: skip
    assert "there is no experiment 'lossbnech'" in err and "it has: lossbench" in err
    err = exits_2(command, ["--tracking-uri", sqlite_uri(db), "--sweep", "0000000000", *out],
                  capsys)  # fmt: skip
    assert "no run of sweep '0000000000'" in err and sweep in err
    assert (len(client.search_runs(["1"])), len(client.search_experiments())) == before
    assert not (tmp_path / "r").exists()


def sweep_config(tmp: Path, uri: str) -> OmegaConf:
    return OmegaConf.create(
        {"hydra": {"sweep": {"dir": str(tmp)}},
         "logger": {"tracking_uri": uri, "experiment_name": "lossbench"}}
    )  # fmt: skip


def job(tmp: Path, name: str, outcome: dict | None) -> None:
    (tmp / name / ".hydra").mkdir(parents=True)
    (tmp / name / ".hydra" / "overrides.yaml").write_text(f"- seed={name}\n")
    if outcome is not None:
        (tmp / name / OUTCOME).write_text(json.dumps({"overrides": [f"seed={name}"], **outcome}))


def sweep_end_exits_1(sweep_dir: Path, uri: str, capsys) -> str:
    """The sweep's closing callback on these job folders: it must exit 1; its output."""
    with pytest.raises(SystemExit) as stop:
        SweepSummary().on_multirun_end(sweep_config(sweep_dir, uri))
    assert stop.value.code == 1
    return capsys.readouterr().out


def test_sweep_end_counts_a_job_without_outcome_as_failed(store, tmp_path: Path, capsys) -> None:
    db, _ = store
    job(tmp_path, "0", {"status": "SKIPPED", "reason": "skip"})
    job(tmp_path, "1", None)  # crashed before writing its outcome
    out = sweep_end_exits_1(tmp_path, sqlite_uri(db), capsys)
    assert "jobs: 0 finished, 1 failed, 1 skipped" in out
    assert "failed: seed=1: the job ended without an outcome" in out


def test_sweep_end_lists_jobs_in_order_with_their_shared_overrides_said_once(
    store, tmp_path: Path, capsys
) -> None:
    db, _ = store
    for n in range(12):
        (tmp_path / str(n) / ".hydra").mkdir(parents=True)
        status = "FAILED" if n == 10 else "SKIPPED" if n % 3 == 2 else "FINISHED"
        outcome = {"overrides": ["dataset=digits", f"seed={n}", "model=mlp"], "status": status,
                   "reason": f"why {n}"}  # fmt: skip
        (tmp_path / str(n) / OUTCOME).write_text(json.dumps(outcome))
    out = sweep_end_exits_1(tmp_path, sqlite_uri(db), capsys)
    assert "jobs: 7 finished, 1 failed, 4 skipped" in out
    listed = out[out.index("jobs:") :].splitlines()[1:]
    assert listed == [
        "  (every job had: dataset=digits model=mlp)",
        *(f"  skipped: seed={n}: why {n}" for n in (2, 5, 8)),
        "  failed: seed=10: why 10",
        "  skipped: seed=11: why 11",
    ]


def test_sweep_end_exits_1_when_its_summary_fails(tmp_path: Path, capsys) -> None:
    job(tmp_path, "0", {"status": "FINISHED", "run_id": "x"})
    broken = tmp_path / "broken.db"
    broken.write_text("not a database")
    out = sweep_end_exits_1(tmp_path, sqlite_uri(broken), capsys)
    assert "the sweep's summary table failed" in out
    assert "jobs: 1 finished, 0 failed, 0 skipped" in out


def test_sweep_end_says_a_reason_once_for_the_jobs_that_share_it() -> None:
    """A grid crossing heads and losses skips each invalid pair once per seed and noise rate:
    one line per reason, naming the pair once and then what each job has of its own."""
    jobs = []
    for rate in ("0.0", "0.4"):
        for head, loss in (("softmax", "ce"), ("softmax", "bce_logits"), ("sigmoid", "ce")):
            for seed in (1, 2):
                own = [f"dataset.noise.rate={rate}", f"head={head}", f"loss={loss}", f"seed={seed}"]
                valid = (head == "softmax") == (loss == "ce")
                reason = "" if valid else f"head={head} cannot be trained with loss={loss}"
                status = "FINISHED" if valid else "SKIPPED"
                if (rate, head, seed) == ("0.4", "softmax", 2) and valid:
                    status, reason = "FAILED", "NaN at step 3"
                jobs.append({"overrides": ["+experiment=grid", *own], "status": status,
                             "reason": reason})  # fmt: skip
    each = ("dataset.noise.rate=0.0 seed=1; dataset.noise.rate=0.0 seed=2; "
            "dataset.noise.rate=0.4 seed=1; dataset.noise.rate=0.4 seed=2")  # fmt: skip
    assert unfinished_lines(jobs) == [
        "  (every job had: +experiment=grid)",
        f"  skipped: head=softmax loss=bce_logits (4 jobs: {each}): "
        "head=softmax cannot be trained with loss=bce_logits",
        f"  skipped: head=sigmoid loss=ce (4 jobs: {each}): "
        "head=sigmoid cannot be trained with loss=ce",
        "  failed: dataset.noise.rate=0.4 head=softmax loss=ce seed=2: NaN at step 3",
    ]


def test_unfinished_lines_show_swept_values_as_typed_not_as_hydra_escapes_them() -> None:
    """``'dataset.split_seed=0,${seed}'``: Hydra's sweeper stores the second value escaped."""
    jobs = [{"overrides": [r"dataset.split_seed=$\{seed\}", f"seed={s}"], "status": "FAILED",
             "reason": "NaN at step 3"} for s in (1, 2)]  # fmt: skip
    assert unfinished_lines(jobs) == [
        "  (every job had: dataset.split_seed=${seed})",
        "  failed: (2 jobs: seed=1; seed=2): NaN at step 3",
    ]


def test_runs_of_one_pair_that_differ_in_config_are_settings_of_their_own(tmp_path: Path) -> None:
    """A sweep over models (model=mlp,cnn) runs every pair twice per seed: the table and the
    report keep the models apart (they used to pool them, and average one run per seed). What
    says only where a run is stored (data_dir) or a key older runs lack sets nothing apart; of
    two runs of one config and seed (rerun=true), the report counts the newest. A pair run on
    another model than the rest is a setting apart; a tuned comparison's lrs are not."""
    import time

    from lossbench.report.pairs import load

    client = prepare_store(sqlite_uri(tmp_path / "mlflow.db"), "lossbench")
    exp = client.get_experiment_by_name("lossbench").experiment_id
    own = {"mlp": {"model/hidden": 128}, "cnn": {"model/channels": "[32, 64]"}}
    acc = {("mlp", "ce"): 0.90, ("mlp", "focal"): 0.91, ("cnn", "ce"): 0.96, ("cnn", "focal"): 0.95}
    runs = [(m, loss, seed, acc[m, loss] + seed / 1000) for m, loss in acc for seed in (1, 2)]
    runs.append(("mlp", "ce", 1, 0.5))  # a rerun, newer: it counts
    for i, (model, loss, seed, value) in enumerate(runs):
        tags = {"dataset": "digits", "head": "softmax", "loss": loss, "seed": str(seed)}
        run = client.create_run(exp, tags=tags, start_time=int(time.time() * 1000) + i)
        params = {"model/name": model, **own[model], "optimizer/lr": 0.001, "seed": seed,
                  "loss/name": loss, "data_dir": f"/data/{i}", **({"dataset/missing": "refuse"}
                  if i % 2 else {})}  # fmt: skip
        for key, v in params.items():
            client.log_param(run.info.run_id, key, v)
        client.log_metric(run.info.run_id, "test/acc", value)
        client.set_terminated(run.info.run_id)
    found = summary.find_runs(client, "lossbench")
    labels = summary.conditions(found)
    assert sorted(set(labels.values())) == ["model=cnn", "model=mlp"]
    console = Console(width=200, record=True)
    console.print(summary.table(found, "models"))
    text = console.export_text()
    assert " config " in text
    rows = re.findall(r"digits +(model=\w+) +softmax +(\w+) +(\d) .* (0\.\d+) ", text)
    assert [r[0] for r in rows] == ["model=cnn"] * 4 + ["model=mlp"] * 5  # grouped by model
    pairs, _ = load(client, "lossbench", None)
    by = {(p.setting, p.loss): p.by_seed("test/acc") for p in pairs}
    assert by == {("digits, model=cnn", "ce"): {1: 0.961, 2: 0.962},
                  ("digits, model=cnn", "focal"): {1: 0.951, 2: 0.952},
                  ("digits, model=mlp", "ce"): {1: 0.5, 2: 0.902},
                  ("digits, model=mlp", "focal"): {1: 0.911, 2: 0.912}}  # fmt: skip
    assert all(len(p.runs) == 2 for p in pairs)

    tuned_exp = client.create_experiment("tuned")  # each pair at its own tuned lr: one setting
    for loss, lr in (("ce", 0.003), ("focal", 0.01), ("nll", 0.003)):
        tags = {"dataset": "digits", "head": "softmax", "loss": loss}
        run = client.create_run(tuned_exp, tags=tags)
        params = {"optimizer/lr": lr, "tuned_lr/softmax/ce": 0.003, "loss/name": loss,
                  "model/name": "mlp" if loss != "nll" else "cnn"}  # fmt: skip
        for key, v in params.items():
            client.log_param(run.info.run_id, key, v)
        client.set_terminated(run.info.run_id)
    tuned = summary.find_runs(client, "tuned")
    by_loss = {r.data.tags["loss"]: label for r in tuned
               for label in [summary.conditions(tuned)[r.info.run_id]]}  # fmt: skip
    assert by_loss == {"ce": "model=mlp", "focal": "model=mlp", "nll": "model=cnn"}  # not lr

    noise_exp = client.create_experiment("noise")  # noise options matter only with noise
    for rate, kind, noise_seed in (("0.0", "symmetric", 0), ("0.0", "asymmetric", 1),
                                   ("0.4", "symmetric", 0), ("0.4", "symmetric", 1)):  # fmt: skip
        run = client.create_run(noise_exp, tags={"dataset": "digits", "head": "softmax"})
        for key, v in (("rate", rate), ("kind", kind), ("seed", noise_seed)):
            client.log_param(run.info.run_id, f"dataset/noise/{key}", v)
        client.set_terminated(run.info.run_id)
    noisy = summary.find_runs(client, "noise")
    assert sorted(summary.conditions(noisy).values()) == [
        "", "", "dataset.noise.seed=0", "dataset.noise.seed=1"]  # fmt: skip

    split_exp = client.create_experiment("splits")  # split_seed='${seed}' beside a fixed split
    for split_seed, seed in (("0", 0), ("0", 1), ("0", 2), ("1", 1), ("2", 2), ("3", 3)):
        run = client.create_run(split_exp, tags={"dataset": "digits", "seed": str(seed)})
        client.log_param(run.info.run_id, "dataset/split_seed", split_seed)
        client.set_terminated(run.info.run_id)
    splits = summary.find_runs(client, "splits")
    by_run = summary.conditions(splits)
    got = sorted((r.data.tags["seed"], r.data.params["dataset/split_seed"], by_run[r.info.run_id])
                 for r in splits)  # fmt: skip
    fixed, resampled = "dataset.split_seed=0", "dataset.split_seed=${seed}"
    assert got == [("0", "0", fixed), ("1", "0", fixed), ("1", "1", resampled),
                   ("2", "0", fixed), ("2", "2", resampled), ("3", "3", resampled)]  # fmt: skip
    alone = [r for r in splits if r.data.params["dataset/split_seed"] != "0"]
    assert set(summary.conditions(alone).values()) == {""}  # all resampled: no setting to name


def test_summary_groups_runs_by_stress_and_names_it(tmp_path: Path) -> None:
    """Runs recorded (no training) in a real store: clean, imbalanced and noisy settings of one
    dataset, with accuracies that would interleave them if ranked across settings."""
    client = prepare_store(sqlite_uri(tmp_path / "mlflow.db"), "lossbench")
    exp = client.get_experiment_by_name("lossbench").experiment_id
    settings = [({}, 0.80), ({"noise/rate": 0.4}, 0.90), ({"imbalance/factor": 10}, 0.70),
                ({"imbalance/factor": 5}, 0.60), ({"noise/rate": 0.4, "noise/kind": "asymmetric"},
                0.95), ({}, 0.85)]  # fmt: skip
    for params, acc in settings:
        run = client.create_run(exp, tags={"dataset": "digits", "head": "softmax", "loss": "ce",
                                           "seed": "1"})  # fmt: skip
        full = {"noise/rate": 0.0, "noise/kind": "symmetric", "imbalance/factor": 1, **params}
        for key, value in full.items():
            client.log_param(run.info.run_id, f"dataset/{key}", value)
        client.log_metric(run.info.run_id, "test/acc", acc)
        client.set_terminated(run.info.run_id)
    console = Console(width=200, record=True)
    console.print(summary.table(client.search_runs([exp]), "settings"))
    rows = re.findall(r"digits +(.+?) +softmax .* (0\.\d+) ", console.export_text())
    assert rows == [("—", "0.8500"), ("—", "0.8000"), ("imbalance 5", "0.6000"),
                    ("imbalance 10", "0.7000"), ("asymmetric noise 0.4", "0.9500"),
                    ("symmetric noise 0.4", "0.9000")]  # fmt: skip
