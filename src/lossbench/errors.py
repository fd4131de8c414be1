"""The one error type a user sees: what was wrong, what is allowed, how to fix it."""


class LossbenchError(Exception):
    """A user-facing configuration or data problem; ``train.py`` prints it and exits 2."""

    exit_code = 2


class InvalidPair(LossbenchError):
    """A (task, head, loss) triple the matrix refuses; a multirun skips it and goes on."""
