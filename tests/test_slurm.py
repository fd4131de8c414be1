"""Slurm for real: sweeps through ``hydra/launcher=slurm`` (sbatch, one job per run), failed jobs
among finished ones, ``scancel`` → KILLED with a checkpoint → ``resume=`` through Slurm into the
same run, the time-limit warning (SIGUSR2) → KILLED, and DDP with two tasks (``srun -n2``, and a
sweep's job of two tasks). On this machine's single-node Slurm (``deploy/slurm/up.sh``, started
once if no node is up); skipped, saying why, where none can be started.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from conftest import ROOT, TINY_OVERRIDES, run_train, sqlite_uri

UP = ROOT / "deploy" / "slurm" / "up.sh"
CANNOT = 3  # up.sh's exit code where this machine cannot have a Slurm (no root, no apt-get)
MULTILABEL = [
    "dataset=multilabel", "dataset.n_samples=400", "dataset.val_size=80", "dataset.test_size=80",
    "dataset.batch_size=32", "head=sigmoid", "loss=bce_logits", "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1", "progress_bar=log",
]  # fmt: skip
STEPS_PER_EPOCH = -(-(400 - 80 - 80) // 32)


def default_partition() -> str | None:
    """The default partition if sinfo answers and a node of it is idle or in use, else None."""
    if shutil.which("sinfo") is None:
        return None
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True,
                             timeout=30).stdout  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    for line in out.splitlines():
        name, state = line.split()
        if name.endswith("*") and state.rstrip("*~#") in ("idle", "mix", "alloc"):
            return name.rstrip("*")
    return None


@pytest.fixture(scope="module")
def partition() -> str:
    """A Slurm partition with a node up: this machine's, started by deploy/slurm/up.sh if none
    is. Skipped (saying why) where up.sh finds it cannot start one; fails if it breaks."""
    if (found := default_partition()) is not None:
        return found
    proc = subprocess.run(["bash", str(UP)], capture_output=True, text=True, timeout=900)
    tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-4:])
    if proc.returncode == CANNOT:
        pytest.skip(f"no Slurm: deploy/slurm/up.sh cannot start one here: {tail}")
    assert proc.returncode == 0, f"deploy/slurm/up.sh failed: {proc.stdout}{proc.stderr}"
    found = default_partition()
    assert found is not None, f"up.sh ended but sinfo shows no node up: {tail}"
    return found


def launcher(partition: str) -> list[str]:
    """The Slurm launcher, one core and 2 GB per job: two jobs at a time on two cores."""
    return ["hydra/launcher=slurm", f"hydra.launcher.partition={partition}",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
            "hydra.launcher.timeout_min=10"]  # fmt: skip


def runs_of(tmp: Path) -> tuple[MlflowClient, list[Run]]:
    client = MlflowClient(sqlite_uri(tmp / "mlflow.db"))
    exp = client.get_experiment_by_name("lossbench")
    return client, client.search_runs([exp.experiment_id]) if exp else []


def job_logs(sweep_dir: Path, tail: int = 3000) -> str:
    """The ends of the Slurm jobs' stdout and stderr (submitit's files, one per task)."""
    return "".join(p.read_text()[-tail:] for p in sorted(sweep_dir.glob(".submitit/*/*_log.*")))


def test_a_sweep_runs_as_slurm_jobs_and_survives_a_failed_one(
    tmp_path: Path, tiny_data, partition: str
) -> None:
    """Four jobs in one job array: lr=1e20 makes two of them NaN (FAILED with the reason), the
    other two finish; each run names its Slurm job; the table, the count and the report work as
    for a local sweep."""
    proc = run_train(
        tmp_path, tiny_data[0], *TINY_OVERRIDES, "head=sigmoid", "loss=bce_logits", "seed=1,2",
        "optimizer.lr=0.001,1e20", *launcher(partition), multirun=True,
    )  # fmt: skip
    logs = proc.stdout[-3000:] + proc.stderr[-3000:] + job_logs(tmp_path / "multirun")
    assert proc.returncode == 1, logs  # a job failed
    assert "jobs: 2 finished, 2 failed, 0 skipped" in proc.stdout, logs
    failed_lines = [line for line in proc.stdout.splitlines() if line.startswith("  failed: ")]
    jobs = sum(
        int(m[1]) if (m := re.search(r"\((\d+) jobs: ", line)) else 1 for line in failed_lines
    )  # jobs failing for one reason share a line
    assert jobs == 2 and all("lr=1e+20" in line for line in failed_lines)
    assert all("NaN or infinite at step" in line for line in failed_lines)

    client, runs = runs_of(tmp_path)
    by_status = {s: [r for r in runs if r.info.status == s] for s in ("FINISHED", "FAILED")}
    assert len(runs) == 4 and len(by_status["FINISHED"]) == len(by_status["FAILED"]) == 2
    assert {float(r.data.params["optimizer/lr"]) for r in by_status["FINISHED"]} == {0.001}
    assert all("NaN or infinite" in r.data.tags["failure"] for r in by_status["FAILED"])
    tags = [r.data.tags for r in runs]
    assert len({t["slurm_job_id"] for t in tags}) == 4  # one Slurm job per run
    assert len({t["slurm_array_job_id"] for t in tags}) == 1  # in one job array
    assert sorted(int(t["slurm_array_task_id"]) for t in tags) == [0, 1, 2, 3]
    (sweep,) = {t["sweep_id"] for t in tags}
    assert f"sweep {sweep} " in proc.stdout  # the closing table's title
    table = proc.stdout.split(f"sweep {sweep} ")[1].split("jobs: ")[0]
    assert table.count("FINISHED") == 2 and table.count("FAILED") == 2
    array = tags[0]["slurm_array_job_id"]
    assert sacct_states(array) == ["COMPLETED"] * 4  # the jobs ended well, two runs failed

    report = subprocess.run(
        [sys.executable, "-m", "lossbench.report", "--experiment=lossbench", f"--sweep={sweep}",
         f"--tracking-uri={sqlite_uri(tmp_path / 'mlflow.db')}", f"--out={tmp_path / 'report'}",
         "--no-log"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]
    with (tmp_path / "report" / "runs.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["run_id"] for r in rows} == {r.info.run_id for r in by_status["FINISHED"]}
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert all(r.info.run_id in text for r in by_status["FAILED"])  # listed, not averaged


def stopped_sweep(
    tmp: Path, data_dir: Path, partition: str, epochs: int, *scancel: str
) -> tuple[subprocess.CompletedProcess[str], Run]:
    """A sweep of one Slurm job, sent ``scancel [options] <job>`` once its first epoch is saved:
    the sweep's process (it has ended) and the job's run, checked KILLED with a checkpoint.
    One validation batch: a run stopped inside its validation (not at its last batch) resumes
    without that epoch's validation (Lightning's loops skip it), whatever the launcher."""
    args = [*MULTILABEL, f"trainer.max_epochs={epochs}", "trainer.limit_val_batches=1",
            *launcher(partition)]  # fmt: skip
    last = tmp / "multirun" / "0" / "checkpoints" / "last.ckpt"
    with ThreadPoolExecutor(1) as pool:
        sweep = pool.submit(run_train, tmp, data_dir, *args, multirun=True)
        deadline = time.monotonic() + 180
        while not last.is_file() and not sweep.done() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert last.is_file(), job_logs(tmp / "multirun")
        _, (running,) = runs_of(tmp)
        subprocess.run(["scancel", *scancel, running.data.tags["slurm_job_id"]], check=True)
        proc = sweep.result(timeout=180)
    logs = proc.stdout[-3000:] + proc.stderr[-3000:] + job_logs(tmp / "multirun")
    assert proc.returncode == 1 and "jobs: 0 finished, 1 failed, 0 skipped" in proc.stdout, logs
    client, (killed,) = runs_of(tmp)
    assert killed.info.status == "KILLED", logs
    assert Path(killed.data.tags["checkpoint"]).is_file()
    assert f"KILLED, {killed.data.tags['failure']}" in proc.stdout  # the command, at the end
    stopped_at = max(m.step for m in client.get_metric_history(killed.info.run_id, "train/loss"))
    assert stopped_at < epochs * STEPS_PER_EPOCH - 1
    return proc, killed


def test_scancel_kills_the_run_with_a_checkpoint_and_resume_through_slurm_continues_it(
    tmp_path: Path, tiny_data, partition: str
) -> None:
    epochs = 12
    _, killed = stopped_sweep(tmp_path, tiny_data[0], partition, epochs)  # scancel: SIGTERM
    run_id, job = killed.info.run_id, killed.data.tags["slurm_job_id"]
    reason = killed.data.tags["failure"]
    assert reason.startswith("stopped by SIGTERM; resume: python train.py -m "), reason
    assert sacct_states(job) == ["CANCELLED"]

    command = shlex.split(reason.split("resume: ", 1)[1])
    assert command[:3] == ["python", "train.py", "-m"] and f"resume={run_id}" in command
    assert "hydra/launcher=slurm" in command and f"hydra.launcher.partition={partition}" in command
    resumed = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *command[2:],
         f"hydra.sweep.dir={tmp_path / 'resumed'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    logs = resumed.stdout[-3000:] + resumed.stderr[-3000:] + job_logs(tmp_path / "resumed")
    assert resumed.returncode == 0 and "jobs: 1 finished, 0 failed" in resumed.stdout, logs
    client, (found,) = runs_of(tmp_path)  # the same run, continued
    assert found.info.run_id == run_id and found.info.status == "FINISHED"
    assert "failure" not in found.data.tags and "test/acc" in found.data.metrics
    assert found.data.tags["slurm_job_id"] != job  # now the resuming job's
    assert "FINISHED" in resumed.stdout.split("jobs: ")[0]  # in that sweep's table
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(epochs * STEPS_PER_EPOCH))  # none twice
    assert len(client.get_metric_history(run_id, "val/loss")) == epochs


def test_a_job_killed_without_a_result_is_a_failed_job_and_the_sweep_prints_its_table(
    tmp_path: Path, tiny_data, partition: str
) -> None:
    """SIGKILL (as the out-of-memory killer sends it) leaves submitit no result: the job is a
    failed job with Slurm's state, its run KILLED (not left RUNNING), the other job finishes,
    and the table is printed."""
    args = [*MULTILABEL, "trainer.max_epochs=12", "seed=1,2", *launcher(partition)]
    last = tmp_path / "multirun" / "0" / "checkpoints" / "last.ckpt"
    with ThreadPoolExecutor(1) as pool:
        sweep = pool.submit(run_train, tmp_path, tiny_data[0], *args, multirun=True)
        deadline = time.monotonic() + 180
        while not last.is_file() and not sweep.done() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert last.is_file(), job_logs(tmp_path / "multirun")
        _, runs = runs_of(tmp_path)
        (first,) = [r for r in runs if r.data.tags["seed"] == "1"]
        os.kill(int(first.data.tags["pid"]), signal.SIGKILL)  # the job's process, as OOM does
        proc = sweep.result(timeout=300)
    logs = proc.stdout[-3000:] + proc.stderr[-3000:] + job_logs(tmp_path / "multirun")
    assert proc.returncode == 1 and "jobs: 1 finished, 1 failed, 0 skipped" in proc.stdout, logs
    (failed,) = [line for line in proc.stdout.splitlines() if line.startswith("  failed: ")]
    tags = first.data.tags
    job = f"{tags['slurm_array_job_id']}_{tags['slurm_array_task_id']}"  # submitit's job id
    assert "seed=1" in failed and f"Slurm job {job} ended without a result (state" in failed, logs
    _, runs = runs_of(tmp_path)
    (second,) = [r for r in runs if r.data.tags["seed"] == "2"]
    assert second.info.status == "FINISHED"
    (killed,) = [r for r in runs if r.data.tags["seed"] == "1"]  # not left RUNNING
    assert killed.info.status == "KILLED", logs
    assert f"Slurm job {job} ended without a result" in killed.data.tags["failure"]
    assert Path(killed.data.tags["checkpoint"]).is_file()  # resumable
    assert "FINISHED" in proc.stdout.split("jobs: ")[0]  # the table was printed


def test_the_time_limit_warning_ends_the_run_killed_with_a_checkpoint(
    tmp_path: Path, tiny_data, partition: str
) -> None:
    """SIGUSR2 is what Slurm sends ``signal_delay_s`` before a submitit job's time limit (sent
    here with scancel, as submitit's own tests do): the run stops as on SIGTERM, resumable, and
    the job ends by itself before its limit."""
    _, killed = stopped_sweep(tmp_path, tiny_data[0], partition, 12, "--signal=USR2")
    reason = killed.data.tags["failure"]
    assert reason.startswith("stopped by SIGUSR2 (Slurm's warning: the job's time limit is near)"
                             "; resume: python train.py -m "), reason  # fmt: skip
    assert sacct_states(killed.data.tags["slurm_job_id"]) == ["COMPLETED"]


def sacct_states(job: str, timeout: float = 60) -> list[str]:
    """The job's final states in Slurm's accounting (slurmdbd). A job whose result submitit has
    already read may still be exiting (RUNNING, COMPLETING) for a moment: wait for its end."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", job],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        states = [state.split()[0] for state in out.split("\n") if state]  # "CANCELLED by 0"
        ongoing = {"PENDING", "RUNNING", "COMPLETING", "SUSPENDED"} & set(states)
        if not ongoing or time.monotonic() > deadline:
            return states
        time.sleep(0.5)


@pytest.mark.parametrize("how", ["srun", "launcher"])
def test_ddp_with_two_tasks_on_slurm_logs_one_run(
    tmp_path: Path, tiny_data, partition: str, how: str
) -> None:
    """Two tasks, one per rank: ``srun -n2``, or a sweep's job with two tasks per node. Slurm
    starts both ranks (Lightning's SLURMEnvironment, no process launching of its own); rank
    zero alone records."""
    args = ["trainer=ddp", *MULTILABEL, "trainer.max_epochs=2"]
    if how == "srun":
        proc = subprocess.run(
            ["srun", "-N1", "-n2", "--ntasks-per-node=2", "--mem=4G", "--time=10",
             f"--partition={partition}", sys.executable, str(ROOT / "train.py"),
             f"data_dir={tiny_data[0]}", f"hydra.run.dir={tmp_path / 'outputs'}",
             f"logger.tracking_uri={sqlite_uri(tmp_path / 'mlflow.db')}",
             f"output_roots=[{tmp_path}]", *args],
            capture_output=True, text=True, cwd=tmp_path, timeout=600,
        )  # fmt: skip
        output = proc.stdout + proc.stderr
    else:
        proc = run_train(tmp_path, tiny_data[0], *args, *launcher(partition),
                         "hydra.launcher.tasks_per_node=2", multirun=True)  # fmt: skip
        output = proc.stdout + proc.stderr + job_logs(tmp_path / "multirun", tail=10**6)
        assert "jobs: 1 finished, 0 failed, 0 skipped" in proc.stdout, output[-4000:]
    assert proc.returncode == 0, output[-4000:]
    assert "distributed_backend=gloo" in output and "MEMBER: 2/2" in output
    assert output.count("SLURM auto-requeueing enabled") >= 2  # each rank in Slurm's environment
    client, (run,) = runs_of(tmp_path)
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
    assert run.data.tags["slurm_job_id"].isdigit()
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    # 240 training samples over 2 ranks: 4 batches of 32 per rank per epoch, each logged once
    assert sorted(steps) == list(range(8))
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 2


def test_a_fused_sweep_as_one_slurm_job_and_scancel_kills_its_members(
    tmp_path: Path, partition: str
) -> None:
    """The README's recipe for a whole grid on one GPU node: the sweep itself is one batch job
    (``sbatch --wrap "exec python train.py -m ... hydra/launcher=fused"``). Its members train side
    by side in that job, tagged with its id; ``scancel`` (Slurm's SIGTERM, as at the time limit)
    ends every open member KILLED, none left RUNNING."""
    uri = sqlite_uri(tmp_path / "mlflow.db")
    train = shlex.join([
        sys.executable, "-u", str(ROOT / "train.py"), "-m", "dataset=digits", "seed=1,2",
        "trainer.max_epochs=100000", "trainer.accelerator=cpu", "progress_bar=log",
        "hydra/launcher=fused", f"logger.tracking_uri={uri}",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ])  # fmt: skip
    out = tmp_path / "job.out"
    submitted = subprocess.run(
        ["sbatch", "--parsable", f"--partition={partition}", "--cpus-per-task=2", "--mem=4G",
         "--time=10", f"--output={out}", f"--chdir={tmp_path}", f"--wrap=exec {train}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    job = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + 180
    training = "fused group multirun-g1: epoch 2/"  # the store is made, both runs are open
    while time.monotonic() < deadline and training not in (out.read_text() if out.exists() else ""):
        time.sleep(0.5)  # (the store is not read before: two processes would both create it)
    _, runs = runs_of(tmp_path)
    assert [r.info.status for r in runs] == ["RUNNING", "RUNNING"], out.read_text()[-3000:]
    subprocess.run(["scancel", job], check=True, timeout=30)
    while time.monotonic() < deadline + 60:
        queued = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True,
                                timeout=30).stdout.strip()  # fmt: skip
        if not queued:
            break
        time.sleep(0.5)
    log_text = out.read_text()
    _, runs = runs_of(tmp_path)
    assert [r.info.status for r in runs] == ["KILLED", "KILLED"], log_text[-3000:]
    assert {r.data.tags["slurm_job_id"] for r in runs} == {job}
    assert len({r.data.tags["fused_group"] for r in runs}) == 1
    assert all(r.data.tags["failure"].startswith("stopped by SIGTERM") for r in runs)
    assert "fused group multirun-g1 was stopped by SIGTERM" in log_text
