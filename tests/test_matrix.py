"""The head × loss × task matrix: what is allowed, and the message for what is not."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

from lossbench import matrix
from lossbench.errors import InvalidPair, LossbenchError

EXPECTED = {
    ("multiclass", "softmax"): ["ce", "nll"],
    ("multiclass", "sigmoid"): ["bce", "bce_logits"],
    ("multilabel", "softmax"): [],
    ("multilabel", "sigmoid"): ["bce", "bce_logits"],
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
    assert f"head={head}" in message and f"loss={loss}" in message
    valid = EXPECTED[task, head]
    assert f"Valid losses for head={head} on a {task} dataset: {', '.join(valid) or 'none'}" in (
        message
    )


def test_unknown_names_list_the_choices() -> None:
    with pytest.raises(
        LossbenchError, match="unknown loss 'hinge'; choose one of: bce, bce_logits, ce, nll"
    ):
        matrix.check("multiclass", "softmax", "hinge")
    with pytest.raises(LossbenchError, match="unknown head 'tanh'"):
        matrix.check("multiclass", "tanh", "ce")


def test_cli_prints_the_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lossbench.matrix"], capture_output=True, text=True, check=True
    ).stdout
    assert "| multiclass | softmax | ce, nll | bce, bce_logits |" in out


def test_readme_shows_the_current_matrix() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- matrix:start -->\n")[1].split("\n<!-- matrix:end -->")[0]
    assert block == matrix.markdown()
