"""The benchmark runs and reports its figures (speed itself lives in `make bench`, not here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lossbench import bench
from lossbench.bench import extrapolated_wall


def test_bench_json_has_the_figures(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lossbench.bench", "--steps", "20", "--warmup", "3",
         "--repeats", "1", "--device", "cpu", "--json", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result["samples_per_s"]) == {"bare", "lightning", "lossbench", "naive"}
    assert all(v > 0 for v in result["samples_per_s"].values())
    for key in ("lossbench_over_bare", "lossbench_over_naive", "lightning_over_bare"):
        assert result[key] > 0
    assert result["device"].startswith("cpu") and result["model"] == "mlp"


def test_a_sequential_grid_over_fewer_seeds_is_extrapolated_with_one_start_up() -> None:
    """16 runs in 100 s, the sweep started 10 s after the process: 48 runs would take the 10 s
    once and the other 90 s three times."""
    sequential = {"wall_s": 100.0, "start_up_s": 10.0, "runs": 16}
    assert extrapolated_wall(sequential, 48) == pytest.approx(10.0 + 90.0 * 3)
    assert extrapolated_wall(sequential, 16) == pytest.approx(100.0)


def test_first_step_marker_writes_when_the_first_batch_starts(tmp_path, monkeypatch) -> None:
    """LOSSBENCH_FIRST_STEP_FILE adds the marker that `lossbench.bench --startup` reads."""
    import time

    import pytorch_lightning as pl
    import torch

    from lossbench.training.progress import FIRST_STEP_FILE, FirstStepMarker, progress_callbacks

    monkeypatch.delenv(FIRST_STEP_FILE, raising=False)
    assert not any(isinstance(c, FirstStepMarker) for c in progress_callbacks("log")[0])
    mark = tmp_path / "first-step.json"
    monkeypatch.setenv(FIRST_STEP_FILE, str(mark))
    callbacks, _ = progress_callbacks("log")
    assert any(isinstance(c, FirstStepMarker) for c in callbacks)

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    before = time.time()
    pl.Trainer(max_steps=2, logger=False, enable_progress_bar=False, enable_checkpointing=False,
               enable_model_summary=False, callbacks=callbacks).fit(
        Tiny(), torch.utils.data.DataLoader(data, batch_size=4))  # fmt: skip
    marked = json.loads(mark.read_text())
    assert before <= marked["time"] <= time.time()
    assert marked["cpu"] > 0 and marked["modules"] > 100


def test_train_py_trains_with_the_collector_on_and_its_imports_frozen(
    tmp_path, tiny_data, monkeypatch
) -> None:
    """train.py turns cyclic garbage collection off while it imports, freezes what the
    imports made, and turns collection back on before anything is composed or trained."""
    from conftest import TINY_OVERRIDES, run_train

    mark = tmp_path / "first-step.json"
    monkeypatch.setenv("LOSSBENCH_FIRST_STEP_FILE", str(mark))
    proc = run_train(tmp_path, tiny_data[0], *TINY_OVERRIDES, "trainer.max_epochs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    marked = json.loads(mark.read_text())
    assert marked["gc_enabled"] is True
    assert marked["gc_frozen"] > 100_000  # torch, Lightning, MLflow, Hydra: ~950,000 objects


def test_fused_step_times_the_stacked_step_per_number_of_members() -> None:
    result = bench.main(["--device", "cpu", "--model", "mlp", "--fused-step", "1,3",
                         "--steps", "2", "--warmup", "1", "--json"])  # fmt: skip
    assert result["model"] == "mlp" and set(result["fused_step"]) == {"1", "3"}
    for row in result["fused_step"].values():
        timed = ("wall_ms", "one_by_one_wall_ms", "one_ce_wall_ms", "criteria_ms",
                 "criteria_one_by_one_ms")  # fmt: skip
        assert all(row[k] > 0 for k in timed), row
        assert "device_busy_ms" not in row  # the profiler's kernel times: CUDA only
