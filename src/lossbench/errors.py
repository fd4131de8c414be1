"""The one error type a user sees: what was wrong, what is allowed, how to fix it."""


class LossbenchError(Exception):
    """A user-facing configuration or data problem; ``train.py`` prints it and exits 2."""

    exit_code = 2


class InvalidPair(LossbenchError):
    """A (task, head, loss) triple the matrix refuses; a multirun skips it and goes on."""


class AlreadyDone(LossbenchError):
    """A sweep job whose exact config already has a FINISHED run; skipped unless rerun=true."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"this config already has a FINISHED run ({run_id}); rerun=true trains it again"
        )
        self.run_id = run_id


class NonFiniteLoss(LossbenchError):
    """The training loss became NaN or infinite: the run stops and is recorded FAILED."""

    exit_code = 1

    def __init__(self, step: int) -> None:
        super().__init__(
            f"the training loss became NaN or infinite at step {step}; the run is recorded "
            "FAILED. Fix: lower optimizer.lr, or check the data and the loss parameters"
        )
        self.step = step
