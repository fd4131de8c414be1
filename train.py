"""Train one configuration (or sweep many with -m): `python train.py head=sigmoid loss=bce`."""

import os
import sys
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ["LOSSBENCH_ROOT"] = str(Path(__file__).resolve().parent)
# Hydra prints an error and exits 1 itself, like any crash; with full errors it raises, and we
# answer with one message and exit code 2. The traceback is shown when the user asked for it.
SHOW_TRACEBACK = os.environ.get("HYDRA_FULL_ERROR") == "1"
os.environ["HYDRA_FULL_ERROR"] = "1"

from lossbench import schemas  # noqa: E402  (after LOSSBENCH_ROOT: the typed config schemas)
from lossbench.errors import LossbenchError, user_message  # noqa: E402

schemas.register()


def stop(err: BaseException, message: str) -> None:
    """One message on stderr (after the traceback, if HYDRA_FULL_ERROR=1), and the exit code."""
    if SHOW_TRACEBACK:
        traceback.print_exception(err)
    print(f"lossbench: {message}", file=sys.stderr)
    sys.exit(getattr(err, "exit_code", 2))


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> str | None:
    from lossbench.task import main as run

    try:
        return run(cfg)
    except LossbenchError as err:  # leaves as an exit, which Hydra does not log as a crash
        stop(err, user_message(err))


if __name__ == "__main__":
    try:
        main()
    except Exception as err:
        if (message := user_message(err)) is None:
            raise
        stop(err, message)
