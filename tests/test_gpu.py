"""Training on a CUDA GPU, for real: small in-process runs (``lossbench.training.run.train``) on
the tiny IDX data, with ``trainer.accelerator=gpu trainer.devices=1``, into a temp SQLite store.

Every test here is marked ``gpu`` and is skipped where ``torch.cuda.is_available()`` is False.
Run them on a GPU machine with ``pytest -m gpu`` (all of them take well under two minutes).

``LOSSBENCH_TEST_DEVICE=cpu pytest -m gpu tests/test_gpu.py`` runs the same tests on the CPU
(``trainer.accelerator=cpu``) instead of skipping them, to check the tests themselves on a
machine without a GPU; the device-specific parts then expect the CPU's behaviour (the
non-finite check of every step rather than of logging steps). ``LOSSBENCH_TEST_DEVICE=cuda``
(the default; ``gpu`` alike) asks for the GPU.
"""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from pytorch_lightning import Callback

from conftest import TINY_OVERRIDES, compose_cfg, run_train, sqlite_uri
from lossbench.errors import NonFiniteLoss
from lossbench.training import run

_DEVICES = {"cuda": "cuda", "gpu": "cuda", "cpu": "cpu"}
_asked = os.environ.get("LOSSBENCH_TEST_DEVICE", "").strip().lower() or "cuda"
if _asked not in _DEVICES:
    raise ValueError(f"LOSSBENCH_TEST_DEVICE={_asked!r}: give cuda (the default), gpu or cpu")
DEVICE = _DEVICES[_asked]  # the torch device type the tests expect the run on
ACCELERATOR = "gpu" if DEVICE == "cuda" else "cpu"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(),
        reason="needs a CUDA GPU (torch.cuda.is_available() is False)",
    ),
]

LOG_EVERY = 4  # trainer.log_every_n_steps: on a GPU, the non-finite check's period


def overrides(tmp_path: Path, data_dir: Path, *extra: str) -> list[str]:
    """conftest's TINY_OVERRIDES on the test device, one epoch, into ``tmp_path``'s store;
    ``extra`` replaces any key it repeats."""
    merged = dict(
        o.split("=", 1)
        for o in [
            *TINY_OVERRIDES,
            f"data_dir={data_dir}",
            f"logger.tracking_uri={sqlite_uri(tmp_path / 'mlflow.db')}",
            f"output_roots=[{tmp_path}]",
            f"trainer.accelerator={ACCELERATOR}",
            "trainer.devices=1",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=4",
            f"trainer.log_every_n_steps={LOG_EVERY}",
            *extra,
        ]
    )
    return [f"{k}={v}" for k, v in merged.items()]


def train(tmp_path: Path, data_dir: Path, *extra: str, callbacks=(), out: str = "out") -> str:
    cfg = compose_cfg(overrides(tmp_path, data_dir, *extra), tmp_path / out)
    return run.train(cfg, callbacks=list(callbacks))


def client_of(tmp_path: Path) -> MlflowClient:
    return MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))


class Where(Callback):
    """At each training batch: the device of every tensor of the data module's in-memory
    splits, of the batch and of the model."""

    def __init__(self) -> None:
        self.seen: list[dict[str, torch.device]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        splits = trainer.datamodule.splits
        where = {f"{k}[{i}]": t.device for k, s in splits.items() for i, t in enumerate(s.tensors)}
        where |= {f"batch[{i}]": t.device for i, t in enumerate(batch)}
        self.seen.append({**where, "model": pl_module.device})


def test_splits_live_on_the_device_during_fit(tmp_path: Path, tiny_data) -> None:
    where = Where()
    run_id = train(tmp_path, tiny_data[0], callbacks=[where])
    assert len(where.seen) == 4  # trainer.limit_train_batches
    first = where.seen[0]
    assert {"train[0]", "train[1]", "val[0]", "test[0]", "batch[0]", "model"} <= set(first)
    for seen in where.seen:
        assert {d.type for d in seen.values()} == {DEVICE}, seen
    found = client_of(tmp_path).get_run(run_id)
    assert found.info.status == "FINISHED"
    assert 0 <= found.data.metrics["test/acc"] <= 1


class Losses(Callback):
    """Whether each training step's loss was finite (read on the host: a sync per step, which
    the test can afford); a step that raised in ``training_step`` is not seen."""

    def __init__(self) -> None:
        self.finite: list[bool] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        assert trainer.global_step == len(self.finite) + 1  # one optimizer step per batch
        self.finite.append(bool(torch.isfinite(outputs["loss"])))


def test_non_finite_loss_fails_the_run_at_its_first_bad_step(tmp_path: Path, tiny_data) -> None:
    """As tests/test_reliability.py provokes it (lr=1e20). On a GPU the check reads the device
    only on logging steps (every LOG_EVERY), yet names the first bad step."""
    losses = Losses()
    extra = ["head=sigmoid", "loss=bce_logits", "optimizer.lr=1e20", "trainer.max_epochs=3",
             "trainer.limit_train_batches=null"]  # fmt: skip
    with pytest.raises(NonFiniteLoss) as err:  # on the CPU here: bad at step 1, not a logging step
        train(tmp_path, tiny_data[0], *extra, callbacks=[losses])
    raised_at = len(losses.finite)  # the step whose training_step raised
    first_bad = losses.finite.index(False) if False in losses.finite else raised_at
    assert 0 < first_bad < 3 * 7, losses.finite  # bad after a step, before the end (7 per epoch)
    assert err.value.step == first_bad
    if DEVICE == "cpu":  # checked every step
        assert raised_at == first_bad
    else:  # checked on the next logging step, which may be the bad step itself
        assert first_bad <= raised_at < first_bad + LOG_EVERY, (first_bad, raised_at)
    client = client_of(tmp_path)
    (failed,) = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    assert failed.info.status == "FAILED"
    assert failed.data.tags["failed_at_step"] == str(first_bad)
    assert "NaN or infinite" in failed.data.tags["failure"]
    assert all(math.isfinite(v) for v in failed.data.metrics.values())  # no NaN recorded


class Precision(Callback):
    """The dtypes of the model's outputs while training."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()

    def on_fit_start(self, trainer, pl_module) -> None:
        def hook(module, inputs, output) -> None:
            if module.training:
                self.dtypes.add(output.dtype)

        pl_module.model.register_forward_hook(hook)


@pytest.mark.parametrize("pair", [(), ("head=sigmoid", "loss=bce")], ids=["default", "bce"])
def test_bf16_mixed_trains_and_its_metrics_are_finite(tmp_path: Path, tiny_data, pair) -> None:
    """bce: BCELoss on probabilities, which CUDA's autocast refuses (the loss turns it off)."""
    precision, where = Precision(), Where()
    run_id = train(tmp_path, tiny_data[0], "trainer.precision=bf16-mixed", *pair,
                   callbacks=[precision, where])  # fmt: skip
    assert precision.dtypes == {torch.bfloat16}  # autocast was on
    assert {d.type for seen in where.seen for d in seen.values()} == {DEVICE}
    client = client_of(tmp_path)
    found = client.get_run(run_id)
    assert found.info.status == "FINISHED"
    assert {"train/loss", "val/loss", "test/loss", "test/acc"} <= set(found.data.metrics)
    assert all(math.isfinite(v) for v in found.data.metrics.values()), found.data.metrics
    assert all(math.isfinite(m.value) for m in client.get_metric_history(run_id, "train/loss"))


class Compiled(Callback):
    def __init__(self) -> None:
        self.models: set[str] = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.models.add(type(pl_module.model).__name__)


def test_compile_trains_and_finishes(tmp_path: Path, tiny_data) -> None:
    compiled, where = Compiled(), Where()
    run_id = train(tmp_path, tiny_data[0], "compile=true", "trainer.limit_val_batches=1",
                   callbacks=[compiled, where])  # fmt: skip
    assert compiled.models == {"OptimizedModule"}  # torch.compile's wrapper
    assert {d.type for seen in where.seen for d in seen.values()} == {DEVICE}
    found = client_of(tmp_path).get_run(run_id)
    assert found.info.status == "FINISHED" and "test/acc" in found.data.metrics
    assert all(math.isfinite(v) for v in found.data.metrics.values())


class SigtermAfterFirstEpoch(Callback):
    """Sends this process SIGTERM at the end of the first epoch, as a scheduler would: Lightning's
    handler (installed for the fit) turns it into a stop at the epoch's end."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == 0:
            handler = signal.getsignal(signal.SIGTERM)
            assert handler not in (signal.SIG_DFL, signal.SIG_IGN, None), handler  # or pytest dies
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_run_stopped_on_the_device_resumes_into_the_same_run(tmp_path: Path, tiny_data) -> None:
    args = ["trainer.max_epochs=2", "trainer.log_every_n_steps=1"]
    with pytest.raises(SystemExit) as stop:
        train(tmp_path, tiny_data[0], *args, callbacks=[SigtermAfterFirstEpoch()], out="o1")
    assert stop.value.code == 128 + signal.SIGTERM
    client = client_of(tmp_path)
    (killed,) = client.search_runs([client.get_experiment_by_name("lossbench").experiment_id])
    run_id = killed.info.run_id
    assert killed.info.status == "KILLED", killed.data.tags.get("failure")
    assert killed.data.tags["failure"].startswith("stopped by SIGTERM")
    assert Path(killed.data.tags["checkpoint"]).is_file()
    before = [(m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")]
    assert sorted(s for s, _ in before) == list(range(4))  # the first epoch's steps

    where = Where()
    assert train(tmp_path, tiny_data[0], *args, f"resume={run_id}", callbacks=[where],
                 out="o2") == run_id  # fmt: skip
    assert len(where.seen) == 4  # the second epoch alone
    assert {d.type for seen in where.seen for d in seen.values()} == {DEVICE}
    found = client.get_run(run_id)
    assert found.info.status == "FINISHED" and "failure" not in found.data.tags
    assert "test/acc" in found.data.metrics
    after = [(m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")]
    assert sorted(s for s, _ in after) == list(range(8))  # continued, none twice
    assert set(before) <= set(after)  # the first epoch's history is kept as it was
    assert len(client.get_metric_history(run_id, "val/loss")) == 2  # one per epoch


def test_the_fused_launcher_trains_a_group_on_the_device(tmp_path: Path, tiny_data) -> None:
    """A fused sweep (CNN: BatchNorm, dropout) on the device: every valid member FINISHED in
    one group, the non-finite ones FAILED at their first bad step, the others unaffected."""
    from test_fused import searchpath

    proc = run_train(tmp_path, tiny_data[0], *overrides(tmp_path, tiny_data[0], "model=cnn"),
                     searchpath(tmp_path), "hydra/launcher=fused", "head=softmax,sigmoid",
                     "loss=ce,bce_logits,sce_inf", "seed=1,2", multirun=True)  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # sce_inf FAILED
    runs = client_of(tmp_path).search_runs(
        [client_of(tmp_path).get_experiment_by_name("lossbench").experiment_id]
    )
    status = {r.info.run_name: r.info.status for r in runs}
    assert len(runs) == 6 and len({r.data.tags["fused_group"] for r in runs}) == 1, status
    for r in runs:
        if "-sce-" in r.info.run_name:
            assert r.info.status == "FAILED" and r.data.tags["failed_at_step"] == "0"
        else:
            assert r.info.status == "FINISHED", status
            assert math.isfinite(r.data.metrics["test/acc"])
