"""Scores that compare across losses (NLL, Brier, ECE, temperature scaling, multi-label ranking
scores) against scikit-learn and the formulas written out; test_on=last tests the last weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from sklearn.metrics import (
    f1_score,
    label_ranking_average_precision_score,
    label_ranking_loss,
    log_loss,
)

from lossbench.heads import make_head
from lossbench.training import calibration
from lossbench.training.metrics import ranking_scores

GEN = torch.Generator().manual_seed(0)
Z = torch.randn(400, 5, generator=GEN) * 2
Y = torch.randint(0, 5, (400,), generator=GEN)
MULTI = (torch.rand(400, 5, generator=GEN) > 0.6).long()


def ece_by_hand(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """Guo et al. 2017, Eq. 3: sum_m |B_m|/n |acc(B_m) - conf(B_m)| over equal-width bins."""
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


@pytest.mark.parametrize("head_name", ["softmax", "sigmoid"])
def test_multiclass_scores(head_name: str) -> None:
    head = make_head(head_name)
    p = head.probs(Z)
    p = (p / p.sum(1, keepdim=True)).numpy().astype(np.float64)  # one distribution per sample
    assert calibration.nll(head, Z, Y, "multiclass").item() == pytest.approx(
        log_loss(Y.numpy(), p, labels=range(5)), rel=1e-4)  # fmt: skip
    onehot = np.eye(5)[Y.numpy()]
    brier = ((p - onehot) ** 2).sum(1).mean()
    assert calibration.brier(head, Z, Y, "multiclass").item() == pytest.approx(brier, rel=1e-5)
    conf, pred = p.max(1), p.argmax(1)
    want = ece_by_hand(conf, (pred == Y.numpy()).astype(float))
    assert calibration.ece(head, Z, Y, "multiclass").item() == pytest.approx(want, abs=1e-5)


def test_multilabel_scores_are_per_sample_and_label() -> None:
    head = make_head("sigmoid")
    p = torch.sigmoid(Z).numpy().astype(np.float64)
    y = MULTI.numpy()
    want_nll = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    assert calibration.nll(head, Z, MULTI, "multilabel").item() == pytest.approx(want_nll, rel=1e-4)
    assert calibration.brier(head, Z, MULTI, "multilabel").item() == pytest.approx(
        ((p - y) ** 2).mean(), rel=1e-5)  # fmt: skip
    # every (sample, label) probability p of "present", against how often the label is present
    want = ece_by_hand(p.ravel(), y.ravel().astype(float))
    assert calibration.ece(head, Z, MULTI, "multilabel").item() == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize(("head_name", "task"), [("softmax", "multiclass"),
                                                  ("sigmoid", "multilabel")])  # fmt: skip
def test_temperature_minimises_the_nll(head_name: str, task: str) -> None:
    head = make_head(head_name)
    y = Y if task == "multiclass" else MULTI
    signal = torch.eye(5)[Y] if task == "multiclass" else MULTI.float() * 2 - 1
    overconfident = (Z + 2 * signal) * 3  # informative logits, three times too sharp
    t = calibration.fit_temperature(head, overconfident, y, task)

    def nll_at(temp: float) -> float:
        return calibration.nll(head, overconfident / temp, y, task).item()

    best = minimize_scalar(nll_at, bounds=(0.05, 20), method="bounded").x
    assert t == pytest.approx(best, rel=1e-2) and t > 1  # the logits were made overconfident
    scores = calibration.scores(head, overconfident, y, task, t)
    assert scores["nll_ts"] <= scores["nll"] + 1e-6 and scores["temperature"] == t


def test_multilabel_ranking_scores_equal_scikit_learn() -> None:
    p = torch.sigmoid(Z)
    predictions = (p >= 0.5).long()
    got = ranking_scores(p, MULTI, predictions)
    y, s = MULTI.numpy(), p.numpy()
    labelled = y.sum(1) > 0
    assert got["ranking_loss"].item() == pytest.approx(label_ranking_loss(y, s), rel=1e-5)
    assert got["lrap"].item() == pytest.approx(label_ranking_average_precision_score(y, s),
                                               rel=1e-5)  # fmt: skip
    top = s.argmax(1)
    assert got["one_error"].item() == pytest.approx(
        (y[labelled, top[labelled]] == 0).mean())  # fmt: skip
    assert got["f1_samples"].item() == pytest.approx(
        f1_score(y, predictions.numpy(), average="samples", zero_division=1.0))  # fmt: skip


def test_test_on_last_tests_the_last_epochs_weights(tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    from conftest import compose_cfg, sqlite_uri
    from lossbench.training import run

    uri = sqlite_uri(tmp_path / "mlflow.db")
    tested = {}
    for mode in ("best", "last"):
        overrides = ["dataset=digits", "trainer.max_epochs=4", "trainer.accelerator=cpu",
                     "progress_bar=log", "checkpoint.monitor=val/acc",
                     "checkpoint.mode=min",  # the worst epoch is "best": it differs from last
                     f"test_on={mode}", f"logger.tracking_uri={uri}"]  # fmt: skip
        cfg = compose_cfg(overrides, tmp_path / mode)
        run_id = run.train(cfg)
        weights = MlflowClient(uri).download_artifacts(run_id, "weights.pt", str(tmp_path / mode))
        tested[mode] = torch.load(weights, weights_only=True)
    last = torch.load(tmp_path / "last" / "checkpoints" / "last.ckpt", weights_only=True)
    for key, value in tested["last"].items():
        torch.testing.assert_close(value, last["state_dict"][f"model.{key}"])
    assert any(not torch.equal(tested["best"][k], v) for k, v in tested["last"].items())
