"""Label noise and class imbalance: exact counts, the published class maps, the seed that fixes
them (never the run's), a clean test split, and what a run records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from rich.console import Console

from conftest import compose_cfg, sqlite_uri
from lossbench.data import make_datamodule
from lossbench.data.stress import ImbalanceConfig, NoiseConfig, long_tail, noisy
from lossbench.errors import LossbenchError
from lossbench.report import summary
from lossbench.training import run

Y = torch.arange(1000) % 10  # 100 samples per class


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_symmetric_noise_flips_exactly_rate_n_labels_to_other_classes() -> None:
    y = noisy(Y, NoiseConfig(rate=0.4), 10, "digits", gen())
    changed = y != Y
    assert int(changed.sum()) == 400
    shifts = (y[changed] - Y[changed]) % 10
    assert shifts.min() >= 1  # never to the same class
    counts = torch.bincount(shifts, minlength=10)[1:]
    assert counts.min() > 25 and counts.max() < 65  # about uniform over the 9 other classes


def test_asymmetric_noise_follows_the_mnist_map() -> None:
    y = noisy(Y, NoiseConfig(rate=0.4, kind="asymmetric"), 10, "mnist", gen())
    changed = y != Y
    assert sorted(set(Y[changed].tolist())) == [2, 3, 5, 6, 7]  # 7→1, 2→7, 5↔6, 3→8
    for source, target in {7: 1, 2: 7, 5: 6, 6: 5, 3: 8}.items():
        moved = changed & (source == Y)
        assert int(moved.sum()) == 40 and set(y[moved].tolist()) == {target}
    other = noisy(Y, NoiseConfig(rate=0.2, kind="asymmetric"), 10, "digits", gen())
    moved = other != Y
    assert torch.equal(other[moved], (Y[moved] + 1) % 10) and int(moved.sum()) == 200


def test_multilabel_noise_flips_bits_or_drops_positives() -> None:
    rows = (torch.rand(200, 6, generator=gen(3)) > 0.7).float()
    flipped = noisy(rows, NoiseConfig(rate=0.1), 6, "multilabel", gen())
    assert int((flipped != rows).sum()) == round(0.1 * 200 * 6)
    dropped = noisy(rows, NoiseConfig(rate=0.5, kind="missing"), 6, "multilabel", gen())
    assert int(((rows == 1) & (dropped == 0)).sum()) == round(0.5 * rows.sum().item())
    assert not ((rows == 0) & (dropped == 1)).any()


def test_noise_depends_on_its_seed_only() -> None:
    torch.manual_seed(1)
    a = noisy(Y, NoiseConfig(rate=0.3), 10, "digits", gen(7))
    torch.manual_seed(2)
    b = noisy(Y, NoiseConfig(rate=0.3), 10, "digits", gen(7))
    c = noisy(Y, NoiseConfig(rate=0.3), 10, "digits", gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_long_tail_keeps_n_max_times_factor_to_the_minus_c_over_c_minus_1() -> None:
    keep = long_tail(Y, ImbalanceConfig(factor=100), 10)
    counts = torch.bincount(Y[keep], minlength=10).tolist()
    assert counts == [round(100 * 100 ** (-c / 9)) for c in range(10)]
    assert counts[0] / counts[-1] == 100
    again = long_tail(Y, ImbalanceConfig(factor=100), 10)
    other = long_tail(Y, ImbalanceConfig(factor=100, seed=1), 10)
    assert torch.equal(keep, again) and not torch.equal(keep, other)


def digits(noise: NoiseConfig, imbalance: ImbalanceConfig, shuffle_seed: int = 0):
    data = make_datamodule("digits", "/nonexistent", shuffle_seed, batch_size=64)
    data.set_stress(noise, imbalance, "digits")
    data.setup()
    return data


def test_the_test_split_stays_clean_and_val_follows_noise_val() -> None:
    clean = digits(NoiseConfig(), ImbalanceConfig())
    noisy_data = digits(NoiseConfig(rate=0.5), ImbalanceConfig(factor=10), shuffle_seed=3)
    for i in (0, 1):
        assert torch.equal(clean.splits["test"].tensors[i], noisy_data.splits["test"].tensors[i])
    val_changed = clean.splits["val"].tensors[1] != noisy_data.splits["val"].tensors[1]
    assert val_changed.float().mean() == pytest.approx(0.5, abs=0.01)
    assert noisy_data.stressed.flipped_fraction == pytest.approx(0.5, abs=0.01)
    counts = torch.tensor(noisy_data.stressed.class_counts)
    assert int(counts.sum()) == len(noisy_data.splits["train"])
    kept_clean_val = digits(NoiseConfig(rate=0.5, val=False), ImbalanceConfig())
    assert torch.equal(kept_clean_val.splits["val"].tensors[1], clean.splits["val"].tensors[1])
    other_run_seed = digits(NoiseConfig(rate=0.5), ImbalanceConfig(factor=10), shuffle_seed=9)
    assert torch.equal(other_run_seed.splits["train"].tensors[1],
                       noisy_data.splits["train"].tensors[1])  # fmt: skip


def test_stress_needs_the_right_kind_of_data() -> None:
    with pytest.raises(LossbenchError, match="kind=missing does not apply to a multiclass"):
        digits(NoiseConfig(rate=0.2, kind="missing"), ImbalanceConfig())
    data = make_datamodule("multilabel", "/x", batch_size=8, n_samples=100, n_features=4,
                           n_classes=3, n_labels=1, allow_unlabeled=True, seed=0, val_size=10,
                           test_size=10)  # fmt: skip
    with pytest.raises(LossbenchError, match="imbalance needs single-label data"):
        data.set_stress(NoiseConfig(), ImbalanceConfig(factor=10), "multilabel")


def test_a_run_records_what_the_stress_did(tmp_path) -> None:
    uri = sqlite_uri(tmp_path / "mlflow.db")
    cfg = compose_cfg(["dataset=digits", "dataset.noise.rate=0.2", "dataset.imbalance.factor=5",
                       "loss.class_weight=effective_number",
                       "trainer.max_epochs=1", "trainer.accelerator=cpu", "progress_bar=log",
                       f"logger.tracking_uri={uri}"], tmp_path)  # fmt: skip
    run_id = run.train(cfg)
    client = MlflowClient(uri)
    found = client.get_run(run_id)
    assert found.data.metrics["data/flipped_fraction"] == pytest.approx(0.2, abs=0.005)
    assert found.data.metrics["data/imbalance_actual"] > 3
    path = client.download_artifacts(run_id, "class_counts.json", str(tmp_path))
    counts = json.loads(Path(path).read_text())["train"]
    assert len(counts) == 10 and max(counts) / min(counts) == pytest.approx(
        found.data.metrics["data/imbalance_actual"])  # fmt: skip
    assert found.data.params["dataset/noise/rate"] == "0.2"
    console = Console(width=250, record=True)  # the sweep's closing table names the stress
    console.print(summary.table([found], "one run"))
    lines = console.export_text().splitlines()
    header, row = [ln for ln in lines if "digits" in ln or "stress" in ln]
    assert header.split()[:2] == ["dataset", "stress"]
    assert row.split()[:7] == ["digits", "symmetric", "noise", "0.2,", "imbalance", "5", "softmax"]
