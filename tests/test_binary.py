"""Two-class sets: the sigmoid head's one logit (``head.binary_outputs=1``, the default) against
one sigmoid per class (2) and the softmax head's two logits."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient
from rich.console import Console
from sklearn.datasets import load_breast_cancer
from test_fused import assert_same_run

from conftest import compose_cfg, run_train, sqlite_uri
from lossbench import predict
from lossbench.errors import LossbenchError
from lossbench.heads import make_head
from lossbench.losses import make_criterion
from lossbench.models.registry import BinaryLogit
from lossbench.report import pairs, summary
from lossbench.report.write import check_metric
from lossbench.training import calibration, run
from lossbench.training.module import Classifier

Z = torch.tensor([[-3.0], [-0.5], [0.0], [0.7], [4.0], [12.0]])
Y = torch.tensor([0, 1, 0, 1, 1, 0])


def criterion(loss: str, **params: object):
    counts = torch.tensor([4.0, 2.0])  # the training split's class counts (class 0, class 1)
    return make_criterion("sigmoid", loss, counts, "multiclass", one_logit=True, **params)


def test_the_sigmoid_heads_probabilities_of_one_logit_are_the_two_classes() -> None:
    logits = BinaryLogit()(Z)
    p = make_head("sigmoid").probs(logits)
    assert torch.allclose(p[:, 1], torch.sigmoid(Z[:, 0]))
    assert torch.allclose(p.sum(1), torch.ones(6))
    # the multi-class scores read it as the distribution (1 - sigmoid(z), sigmoid(z))
    nll = calibration.nll(make_head("sigmoid"), logits, Y, "multiclass")
    assert nll == pytest.approx(float(F.binary_cross_entropy_with_logits(Z[:, 0], Y.float())))


@pytest.mark.parametrize(
    ("loss", "params", "expected"),
    [
        # BCEWithLogitsLoss on one logit (PyTorch's binary classifier; Keras' binary_crossentropy)
        ("bce_logits", {}, lambda z, y: F.binary_cross_entropy_with_logits(z, y)),
        ("bce", {}, lambda z, y: F.binary_cross_entropy(torch.sigmoid(z), y)),
        # pos_weight w on the positive term: -w y log p - (1 - y) log(1 - p)
        (
            "bce_logits",
            {"pos_weight": 3.0},
            lambda z, y: -(3 * y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)).mean(),
        ),
        # Lin et al. 2017, Eq. 5: -a_t (1 - p_t)^gamma log p_t, a_t = alpha for y = 1
        (
            "focal",
            {"gamma": 2.0, "alpha": 0.25},
            lambda z, y: (
                -(
                    torch.where(y == 1, 0.25, 0.75)
                    * (1 - torch.where(y == 1, torch.sigmoid(z), torch.sigmoid(-z))) ** 2
                    * torch.where(y == 1, F.logsigmoid(z), F.logsigmoid(-z))
                ).mean()
            ),
        ),
        # Ridnik et al. 2021, Eq. 7 (clip 0): y (1-p)^g+ log p + (1-y) p^g- log(1-p)
        (
            "asl",
            {"gamma_pos": 1.0, "gamma_neg": 4.0, "clip": 0.0},
            lambda z, y: (
                -(
                    y * (1 - torch.sigmoid(z)) * F.logsigmoid(z)
                    + (1 - y) * torch.sigmoid(z) ** 4 * F.logsigmoid(-z)
                ).mean()
            ),
        ),
        ("brier", {}, lambda z, y: ((torch.sigmoid(z) - y) ** 2).mean()),
        # Cui et al. 2019: each sample's binary loss times w_y, w ∝ 1/n_c, sum w = C = 2
        (
            "bce_logits",
            {"class_weight": "inverse_frequency"},
            lambda z, y: (
                torch.where(y == 1, 4 / 3, 2 / 3)
                * F.binary_cross_entropy_with_logits(z, y, reduction="none")
            ).mean(),
        ),
    ],  # fmt: skip
)
def test_the_loss_of_one_logit_is_its_sources_binary_formula(loss, params, expected) -> None:
    """The criterion gets the model's (-z, z) and the class indices; the loss sees z alone."""
    z = Z[:, 0].clone().requires_grad_(True)
    value = criterion(loss, **params)(BinaryLogit()(z[:, None]), Y)
    reference = expected(z, Y.float())
    assert value.item() == pytest.approx(float(reference), rel=1e-5)
    (grad,) = torch.autograd.grad(value, z)
    (grad_ref,) = torch.autograd.grad(reference, z)
    assert torch.allclose(grad, grad_ref, atol=1e-6)


def test_bad_binary_options_are_refused() -> None:
    with pytest.raises(LossbenchError, match=r"head.binary_outputs=3 is neither 1 .* nor 2"):
        make_head("sigmoid", binary_outputs=3)
    with pytest.raises(LossbenchError, match=r"pos_weight has 2 values, but the sigmoid head has "
                       r"1 output here \(one logit"):  # fmt: skip
        criterion("bce_logits", pos_weight=[1.0, 2.0])


def test_one_logit_only_for_a_two_class_single_label_set() -> None:
    head = make_head("sigmoid")
    assert head.one_logit("multiclass", 2)
    assert not head.one_logit("multiclass", 3) and not head.one_logit("multilabel", 2)
    assert not make_head("sigmoid", binary_outputs=2).one_logit("multiclass", 2)
    assert not make_head("softmax").one_logit("multiclass", 2)


def classifier(threshold: float | str) -> Classifier:
    head = make_head("sigmoid", threshold=threshold)
    crit = make_criterion(head, "bce_logits", torch.tensor([3.0, 3.0]), "multiclass", True)
    return Classifier(BinaryLogit(), head, crit, "multiclass", 2, optimizer=lambda p: None)


def test_a_two_class_prediction_is_class_1_where_its_probability_reaches_the_threshold() -> None:
    """One logit: class 1 where sigmoid(z) >= head.threshold; ``tuned``: the threshold with the
    best F1 of class 1 on the validation split (scikit-learn's precision-recall curve)."""
    from sklearn.metrics import f1_score

    z, y = Z, Y  # sigmoid(z): 0.047 0.378 0.5 0.668 0.982 1.0; y: 0 1 0 1 1 0
    for threshold, expected in ((0.5, [0, 0, 1, 1, 1, 1]), (0.9, [0, 0, 0, 0, 1, 1])):
        module = classifier(threshold)
        head = make_head("sigmoid", threshold=threshold)
        predicted = head.predict(BinaryLogit()(z), "multiclass", None, True)
        assert predicted.tolist() == expected
        acc = module.score("test", BinaryLogit()(z), y)["test/acc"]
        assert float(acc) == pytest.approx(float((torch.tensor(expected) == y).float().mean()))
    module = classifier("tuned")
    module.score("val", BinaryLogit()(z), y)
    (tuned,) = module.thresholds.tolist()
    assert tuned == pytest.approx(float(torch.sigmoid(torch.tensor(-0.5))))  # F1 3/4 of class 1
    best = max(f1_score(y, (torch.sigmoid(z[:, 0]) >= t).long()) for t in torch.sigmoid(z[:, 0]))
    assert f1_score(y, (torch.sigmoid(z[:, 0]) >= tuned).long()) == pytest.approx(best)


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """scikit-learn's Wisconsin breast cancer set (569 rows, 30 features, two named classes)."""
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.copy()
    frame["target"] = frame["target"].map(dict(enumerate(data.target_names)))
    path = tmp_path_factory.mktemp("binary") / "cancer.csv"
    frame.to_csv(path, index=False)
    return path


def table_overrides(path: Path) -> list[str]:
    return [
        "dataset=table",
        f"dataset.path={path}",
        "dataset.label_column=target",
        "model=mlp",
        "trainer.max_epochs=3",
        "trainer.accelerator=cpu",
        "progress_bar=log",
    ]


def test_a_two_class_run_trains_one_logit_and_predicts_both_classes(
    table: Path, tmp_path: Path
) -> None:
    uri = sqlite_uri(tmp_path / "mlflow.db")
    ids = {}
    for outputs in (1, 2):
        overrides = [*table_overrides(table), f"logger.tracking_uri={uri}", "head=sigmoid",
                     "loss=bce_logits", f"head.binary_outputs={outputs}"]  # fmt: skip
        ids[outputs] = run.train(compose_cfg(overrides, tmp_path / str(outputs)))
    client = MlflowClient(uri)
    for outputs, run_id in ids.items():
        r = client.get_run(run_id)
        assert r.info.status == "FINISHED" and r.data.params["head/binary_outputs"] == str(outputs)
        assert r.data.metrics["test/acc"] > 0.85
        assert 0.9 < r.data.metrics["test/auroc"] <= 1 and 0.9 < r.data.metrics["test/ap"] <= 1
        spec, model = predict.load_run(uri, run_id)
        last = [p for p in model.parameters()][-1]
        assert last.shape == (outputs,) and spec["one_logit"] == (outputs == 1)
    # the one-logit run's loss is its binary cross-entropy: the NLL of (1 - p, p)
    one = client.get_run(ids[1]).data.metrics
    assert one["test/loss"] == pytest.approx(one["test/nll"], rel=1e-3)
    frame = pd.read_csv(table)
    spec, model = predict.load_run(uri, ids[1])
    names, x = predict.inputs(table, spec)
    labels, probs = predict.predict(spec, model, x)
    assert spec["classes"] == ["benign", "malignant"]
    assert torch.allclose(probs.sum(1), torch.ones(len(frame)), atol=1e-6)
    assert labels == [spec["classes"][i] for i in probs.argmax(1).tolist()]
    assert (pd.Series(labels) == frame["target"]).mean() > 0.85
    # head.threshold=tuned: class 1's threshold chosen on val, recorded, and used by predict
    overrides = [*table_overrides(table), f"logger.tracking_uri={uri}", "head=sigmoid",
                 "loss=bce_logits", "head.threshold=tuned"]  # fmt: skip
    tuned = run.train(compose_cfg(overrides, tmp_path / "tuned"))
    assert "thresholds.json" in {a.path for a in client.list_artifacts(tuned)}
    spec, model = predict.load_run(uri, tuned)
    (threshold,) = spec["thresholds"]
    labels, probs = predict.predict(spec, model, x)
    assert labels == [spec["classes"][int(p >= threshold)] for p in probs[:, 1].tolist()]


def test_fused_two_class_heads_train_in_one_loop_per_network_as_sequential_runs(
    table: Path, tmp_path: Path
) -> None:
    """One logit and two sigmoid outputs differ in the network's last layer: the group trains
    as two loops, each member with its sequential run's history; the report tells them apart."""
    extra = [*table_overrides(table), "head=sigmoid", "loss=bce_logits"]
    proc = run_train(tmp_path, tmp_path / "data", *extra, "hydra/launcher=fused",
                     "head.binary_outputs=1,2", "seed=1,2", multirun=True)  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "group 1 (fused, 4 runs)" in out and "its networks differ in shape" in out
    fused = MlflowClient(sqlite_uri(tmp_path / "mlflow.db"))
    runs = fused.search_runs([fused.get_experiment_by_name("lossbench").experiment_id])
    loops = {r.data.tags["fused_group"] for r in runs}
    assert len(runs) == 4 and len(loops) == 2 and all(g.endswith(("a", "b")) for g in loops)
    seq_uri = sqlite_uri(tmp_path / "sequential.db")
    for outputs in (1, 2):
        for seed in (1, 2):
            overrides = [
                *extra,
                f"logger.tracking_uri={seq_uri}",
                f"seed={seed}",
                f"data_dir={tmp_path / 'data'}",
                f"head.binary_outputs={outputs}",
            ]
            run.train(compose_cfg(overrides, tmp_path / "sequential" / f"{outputs}-{seed}"))
    seq = MlflowClient(seq_uri)
    seq_runs = seq.search_runs([seq.get_experiment_by_name("lossbench").experiment_id])

    def config(r) -> tuple[str, str]:
        return r.data.params["head/binary_outputs"], r.data.tags["seed"]

    by_config = {config(r): r for r in seq_runs}
    for mine in runs:
        assert_same_run(fused, mine, seq, by_config[config(mine)])
    found, _ = pairs.load(fused, "lossbench", None)
    names = sorted(p.name for p in found)
    assert names == ["sigmoid + bce_logits [binary_outputs=1]",
                     "sigmoid + bce_logits [binary_outputs=2]"]  # fmt: skip
    assert all(len(p.runs) == 2 for p in found)
    console = Console(width=200, record=True)  # the sweep's table: a column tells them apart
    console.print(summary.table(runs, "binary"))
    text = console.export_text()
    assert "variant" in text
    assert text.count("binary_outputs=1") == text.count("binary_outputs=2") == 2


def test_two_class_ranking_scores_are_sklearns() -> None:
    """AUROC (Fawcett 2006) and average precision of the second class's probability, against
    scikit-learn's ``roc_auc_score`` and ``average_precision_score``."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from lossbench.training.metrics import binary_scores

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (200,), generator=g)
    p = torch.sigmoid(torch.randn(200, generator=g) + y)  # informative, with ties-free scores
    scores = binary_scores(p, y)
    assert float(scores["auroc"]) == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    assert float(scores["ap"]) == pytest.approx(average_precision_score(y, p), abs=1e-6)


def test_tune_takes_auroc_for_a_two_class_table(table: Path, tmp_path: Path) -> None:
    """``lossbench.studies.tune --metric auroc`` reads the table's classes before training: two
    here, so the score is taken (on digits' ten it is refused, tests/test_tune.py)."""
    cfg = compose_cfg(table_overrides(table), tmp_path)
    classes = run.make_data(cfg).num_classes
    assert classes == 2
    assert check_metric("auroc", "multiclass", classes) == "test/auroc"
