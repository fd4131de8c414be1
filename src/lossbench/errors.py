"""The one error type a user sees: what was wrong, what is allowed, how to fix it; and the
checks and command-line handling that produce it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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


class RunStopped(SystemExit):
    """A run stopped by a signal (Ctrl-C, SIGTERM, Slurm's time limit): recorded KILLED with a
    checkpoint. ``reason`` says which signal and the command that resumes the run."""

    def __init__(self, code: int, run_id: str, reason: str) -> None:
        super().__init__(code)
        self.run_id, self.reason = run_id, reason


def check_range(
    key: str,
    value: float,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    example: object = None,
) -> None:
    """Refuse ``key=value`` outside the range the bounds give, naming the range and a fix,
    e.g. ``loss.gamma=-1 is out of range: it must be >= 0. Fix: set e.g. loss.gamma=2``."""
    bounds = [(ge, ">=", value >= ge if ge is not None else True),
              (gt, ">", value > gt if gt is not None else True),
              (le, "<=", value <= le if le is not None else True),
              (lt, "<", value < lt if lt is not None else True)]  # fmt: skip
    if all(ok for _, _, ok in bounds):
        return
    rule = " and ".join(f"{op} {bound:g}" for bound, op, _ in bounds if bound is not None)
    fix = f"set e.g. `{key}={example}`" if example is not None else f"choose a value {rule}"
    raise LossbenchError(f"{key}={value} is out of range: it must be {rule}. Fix: {fix}")


# lossbench's configs built on a Hydra plugin's: (its config's name, the choice, the package)
PLUGIN_CONFIGS = (
    ("hydra/launcher/submitit_", "hydra/launcher=slurm", "hydra-submitit-launcher"),
    ("hydra/sweeper/optuna", "hydra/sweeper=lr_search", "hydra-optuna-sweeper"),
)


def user_message(err: BaseException) -> str | None:
    """What ``train.py`` prints after ``lossbench: `` for ``err``, or None for a crash (whose
    traceback is shown). Hydra's and OmegaConf's config errors (an unknown option, a value of the
    wrong type, an unknown key) keep the first line of each cause, plus the keys a typed node
    takes, and the fix."""
    import dataclasses

    from hydra.errors import HydraException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    if isinstance(err, LossbenchError):
        return f"error: {err}"
    if not isinstance(err, HydraException | OmegaConfBaseException):
        return None
    text = str(err).split("\nConfig search path:")[0].rstrip()
    for config, choice, package in PLUGIN_CONFIGS:
        if f"Could not load '{config}" in text:
            return (
                f"error: {choice} needs {package}, which is not installed here (Hydra: "
                f"{text.splitlines()[0]}). Fix: `pip install '{package}>=1.2'` (a dependency "
                f"of lossbench: `make setup` installs it), or drop {choice}"
            )
    lines, cause = [text if "Available options" in text else text.splitlines()[0]], err.__cause__
    while cause is not None:
        first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        if first not in lines[-1]:
            lines.append(first)
        schema, key = getattr(cause, "object_type", None), getattr(cause, "key", None)
        unknown = isinstance(cause, ConfigKeyError | ConfigAttributeError)
        if unknown and dataclasses.is_dataclass(schema) and key is not None:
            from lossbench.schemas import unknown_key

            lines.append(unknown_key(schema, str(key)))
        cause = cause.__cause__
    return (
        "error in the config or overrides: " + ": ".join(lines)
        + "\nFix: `python train.py --help` lists the config groups and options."
    )  # fmt: skip


@contextmanager
def exit_on_user_error(program: str) -> Iterator[None]:
    """For a command: a :class:`LossbenchError` becomes its one message and its exit code."""
    try:
        yield
    except LossbenchError as err:
        print(f"{program}: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


def check_writable_dir(path: str | Path, what: str, fix: str) -> None:
    """Create folder ``path`` if missing and write a file in it, or refuse ``what`` with ``fix``."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".lossbench-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise LossbenchError(f"{what} is not writable ({err}). Fix: {fix}") from None
