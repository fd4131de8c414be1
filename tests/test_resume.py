"""Ctrl-C, SIGTERM and kill -9 end a run KILLED, resumable from its last checkpoint into the same
MLflow run; resume= refuses anything else and leaves the run as it was."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, compose_cfg, run_train, sqlite_uri
from lossbench.errors import LossbenchError
from lossbench.training import run

ARGS = [
    "dataset=multilabel", "dataset.n_samples=400", "dataset.val_size=80", "dataset.test_size=80",
    "dataset.batch_size=32", "head=sigmoid", "loss=bce_logits", "trainer.max_epochs=60",
    "trainer.accelerator=cpu", "trainer.log_every_n_steps=1", "progress_bar=log",
]  # fmt: skip
STEPS_PER_EPOCH = -(-(400 - 80 - 80) // 32)


def start(tmp_path: Path, data_dir: Path) -> tuple[subprocess.Popen, list[str]]:
    """train.py, running until its third epoch is logged; returns the process and its log."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={tmp_path / 'out1'}",
         f"data_dir={data_dir}", f"logger.tracking_uri={sqlite_uri(tmp_path / 'mlflow.db')}",
         f"output_roots=[{tmp_path}]", *ARGS],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )  # fmt: skip
    log = []
    for line in proc.stdout:
        log.append(line)
        if "epoch 3/60" in line:
            break
    return proc, log


def only_run(tmp_path: Path):
    client = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    (found,) = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    return client, found


def interrupted_run(tmp_path: Path, data_dir: Path, sig: signal.Signals):
    """train.py stopped by ``sig`` once its third epoch is logged: (returncode, output, run)."""
    proc, log = start(tmp_path, data_dir)
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=120)
    _, found = only_run(tmp_path)
    assert found.info.status == "KILLED", "".join(log) + rest
    return proc.returncode, rest, found


@pytest.mark.parametrize(
    ("sig", "code", "name"),
    [(signal.SIGINT, 1, "SIGINT (Ctrl-C)"), (signal.SIGTERM, 143, "SIGTERM")],
)
def test_interrupt_ends_killed_naming_the_signal_and_the_resume_command(
    tmp_path: Path, tiny_data, sig, code, name
) -> None:
    returncode, output, killed = interrupted_run(tmp_path, tiny_data[0], sig)
    assert returncode == code
    assert Path(killed.data.tags["checkpoint"]).is_file()
    assert killed.data.tags["failure"].startswith(f"stopped by {name}; resume: python train.py")
    last = output.strip().splitlines()[-3:]
    run_id = killed.info.run_id
    assert f"run {run_id} was stopped by {name} and is KILLED" in last[0], output[-2000:]
    assert last[-1].strip().startswith("python train.py") and f"resume={run_id}" in last[-1]


def test_the_printed_command_resumes_the_run_in_place(tmp_path: Path, tiny_data) -> None:
    _, output, killed = interrupted_run(tmp_path, tiny_data[0], signal.SIGTERM)
    client = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    assert client.get_metric_history(killed.info.run_id, "train/loss")
    command = shlex.split(output.strip().splitlines()[-1])
    assert command[:2] == ["python", "train.py"]
    resumed = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *command[2:], f"hydra.run.dir={tmp_path / 'o2'}"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    found = client.get_run(killed.info.run_id)
    assert found.info.status == "FINISHED" and "failure" not in found.data.tags
    history = client.get_metric_history(found.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(60 * STEPS_PER_EPOCH))  # none twice
    assert len(client.get_metric_history(found.info.run_id, "val/loss")) == 60
    assert "test/acc" in found.data.metrics


def test_kill_9_is_closed_killed_by_the_next_run_and_resumes(tmp_path: Path, tiny_data) -> None:
    proc, _ = start(tmp_path, tiny_data[0])
    proc.kill()  # SIGKILL: nothing in the process can react
    proc.communicate(timeout=60)
    client, stale = only_run(tmp_path)
    assert stale.info.status == "RUNNING" and stale.data.tags["pid"] == str(proc.pid)

    small = [*ARGS, "trainer.max_epochs=1", "seed=7"]  # another run on the same store
    run.train(compose_cfg([*small, f"logger.tracking_uri={sqlite_uri(tmp_path / 'mlflow.db')}"],
                          tmp_path / "other"))  # fmt: skip
    closed = client.get_run(stale.info.run_id)
    assert closed.info.status == "KILLED"
    assert f"pid {proc.pid}" in closed.data.tags["failure"]
    checkpoint = Path(closed.data.tags["checkpoint"])  # the last epoch's (checkpoint.save_last)
    assert checkpoint.name == "last.ckpt" and checkpoint.is_file()

    resumed = run_train(tmp_path, tiny_data[0], *ARGS, f"resume={stale.info.run_id}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    found = client.get_run(stale.info.run_id)
    assert found.info.status == "FINISHED" and "test/acc" in found.data.metrics
    history = client.get_metric_history(found.info.run_id, "train/loss")
    assert max(m.step for m in history) == 60 * STEPS_PER_EPOCH - 1


def test_close_stale_command_closes_a_dead_process_run(tmp_path: Path) -> None:
    from lossbench.tracking.store import prepare_store, process_tags

    client = prepare_store(sqlite_uri(tmp_path / "mlflow.db"), "lossbench")
    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = process_tags()  # this process: alive, so its run stays RUNNING
    exp = client.get_experiment_by_name("lossbench").experiment_id
    gone = client.create_run(exp, tags={**alive, "pid": str(dead.pid), "pid_start": ""})
    mine = client.create_run(exp, tags=alive)
    proc = subprocess.run(
        [sys.executable, "-m", "lossbench.tracking.runs", "close-stale",
         f"--tracking-uri={sqlite_uri(tmp_path / 'mlflow.db')}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "KILLED" in proc.stdout and "1 stale run(s) closed" in proc.stdout
    assert client.get_run(gone.info.run_id).info.status == "KILLED"
    assert client.get_run(mine.info.run_id).info.status == "RUNNING"
    missing = subprocess.run(
        [sys.executable, "-m", "lossbench.tracking.runs", "close-stale",
         f"--tracking-uri={sqlite_uri(tmp_path / 'nope.db')}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode == 2 and "there is no tracking store" in missing.stderr
    assert not (tmp_path / "nope.db").exists()


def snapshot(client: MlflowClient, run_id: str) -> tuple:
    found = client.get_run(run_id)
    history = {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)]
               for k in found.data.metrics}  # fmt: skip
    return found.info.status, found.info.end_time, found.data.tags, found.data.params, history


SMALL = [*(a for a in ARGS if not a.startswith("trainer.max_epochs")), "trainer.max_epochs=2"]


def test_resume_of_a_finished_run_is_refused_twice_and_changes_nothing(tmp_path: Path) -> None:
    uri = sqlite_uri(tmp_path / "mlflow.db")
    run_id = run.train(compose_cfg([*SMALL, f"logger.tracking_uri={uri}"], tmp_path / "a"))
    client = MlflowClient(uri)
    before = snapshot(client, run_id)
    for attempt in ("b", "c"):
        cfg = compose_cfg([*SMALL, f"logger.tracking_uri={uri}", f"resume={run_id}"],
                          tmp_path / attempt)  # fmt: skip
        with pytest.raises(LossbenchError, match="the run is FINISHED; only a KILLED run") as err:
            run.train(cfg)
        assert err.value.exit_code == 2
    assert snapshot(client, run_id) == before
    assert len(client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])) == 1


def test_resume_refuses_a_checkpoint_outside_the_output_folders(tmp_path: Path) -> None:
    uri = sqlite_uri(tmp_path / "mlflow.db")
    run_id = run.train(compose_cfg([*SMALL, f"logger.tracking_uri={uri}"], tmp_path / "runs" / "a"))
    client = MlflowClient(uri)
    planted = tmp_path / "elsewhere" / "evil.ckpt"  # a tag edited to point anywhere
    planted.parent.mkdir()
    planted.write_bytes(b"not a checkpoint")
    client.set_tag(run_id, "checkpoint", str(planted))
    client.set_terminated(run_id, "KILLED")
    before = snapshot(client, run_id)
    cfg = compose_cfg([*SMALL, f"logger.tracking_uri={uri}", f"resume={run_id}",
                       f"output_roots=[{tmp_path / 'runs'}]"], tmp_path / "runs" / "b")  # fmt: skip
    with pytest.raises(LossbenchError, match="lies outside the output folders"):
        run.train(cfg)
    assert snapshot(client, run_id) == before


def test_every_torch_load_is_weights_only() -> None:
    """lossbench loads tensors only: every torch.load, and Lightning's checkpoint loading in
    fit/test, passes weights_only=True."""
    sources = {p: p.read_text() for p in (ROOT / "src" / "lossbench").rglob("*.py")}
    loads = [(p, line) for p, text in sources.items() for line in text.splitlines()
             if "torch.load(" in line]  # fmt: skip
    assert loads and all("weights_only=True" in line for _, line in loads), loads
    run_py = sources[ROOT / "src" / "lossbench" / "training" / "run.py"]
    for call in ("trainer.fit(", "trainer.test("):
        line = next(line for line in run_py.splitlines() if call in line)
        assert "weights_only=True" in line, line


@pytest.mark.parametrize("every_n_train_steps", [0, 5])
def test_checkpoint_keeps_lightnings_state_key(every_n_train_steps: int) -> None:
    """lossbench's Checkpoint stores its state under ModelCheckpoint's key, so that checkpoints
    of either resume with the other."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from lossbench.training.checkpoint import Checkpoint

    settings = {"monitor": "val/acc", "mode": "max", "every_n_train_steps": every_n_train_steps}
    assert Checkpoint(**settings).state_key == ModelCheckpoint(**settings).state_key
    assert Checkpoint(**settings).state_key != Checkpoint(monitor="val/loss").state_key
