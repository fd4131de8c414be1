"""The head × loss × task matrix: what is allowed, and the message for what is not."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT
from lossbench import matrix, stability
from lossbench.errors import InvalidPair, LossbenchError

SIGMOID = ["bce", "bce_logits", "multilabel_soft_margin", "focal", "asl", "brier"]
EXPECTED = {
    ("multiclass", "softmax"): [
        "ce",
        "ce_onehot",
        "nll",
        "hinge",
        "focal",
        "gce",
        "sce",
        "mae",
        "nce_rce",
        "brier",
    ],
    ("multiclass", "sigmoid"): SIGMOID,
    ("multilabel", "softmax"): ["ce_onehot"],
    ("multilabel", "sigmoid"): SIGMOID,
}


@pytest.mark.parametrize(("task", "head"), list(EXPECTED))
def test_valid_losses(task: str, head: str) -> None:
    assert matrix.valid_losses(task, head) == EXPECTED[task, head]


@pytest.mark.parametrize(
    ("task", "head", "loss"),
    [(t, h, loss) for t, h, loss, ok in matrix.table() if not ok],
)
def test_invalid_triples_are_refused_with_the_valid_losses(task, head, loss) -> None:
    with pytest.raises(InvalidPair) as err:
        matrix.check(task, head, loss)
    message = str(err.value)
    assert f"head={head} cannot be trained with loss={loss} on a {task} dataset" in message
    valid = ", ".join(EXPECTED[task, head])
    assert f"Valid losses for head={head} on a {task} dataset: {valid}." in message


def test_aliases_follow_their_loss() -> None:
    assert matrix.is_valid("multiclass", "softmax", "sparse_categorical_crossentropy")
    assert matrix.is_valid("multilabel", "softmax", "categorical_crossentropy")
    with pytest.raises(InvalidPair, match="bce fits the sigmoid head"):
        matrix.check("multiclass", "softmax", "binary_crossentropy")


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(LossbenchError, match="unknown loss 'hingee'; choose one of: ce, "):
        matrix.check("multiclass", "softmax", "hingee")
    with pytest.raises(LossbenchError, match="unknown head 'tanh'"):
        matrix.check("multiclass", "tanh", "ce")


def test_cli_prints_the_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lossbench.matrix"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == matrix.markdown()
    assert "| multilabel | softmax | ce_onehot |" in out


def readme_block(name: str) -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split(f"<!-- {name}:start -->\n")[1].split(f"\n<!-- {name}:end -->")[0]


def test_readme_shows_the_current_matrix() -> None:
    assert readme_block("matrix") == matrix.markdown()


def test_readme_shows_the_current_stability_table() -> None:
    assert readme_block("stability") == stability.markdown()
