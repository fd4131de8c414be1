"""Train one configuration (or sweep many with -m): `python train.py head=sigmoid loss=bce`."""

import atexit
import gc

# Start-up: no cyclic garbage collection while the libraries create their ~950,000 objects
# (it scanned them again and again: ~1.4 s of a run's start here), which are then frozen out
# of every later collection (gc.freeze); and frozen again at exit, where the interpreter's
# last collections over all of them took ~1.5 s. Measured in experiments/bench/README.md.
gc.disable()
atexit.register(gc.freeze)  # registered first, so it runs after every other exit handler

import os  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

os.environ["LOSSBENCH_ROOT"] = str(Path(__file__).resolve().parent)
# Hydra prints an error and exits 1 itself, like any crash; with full errors it raises, and we
# answer with one message and exit code 2. The traceback is shown when the user asked for it.
SHOW_TRACEBACK = os.environ.get("HYDRA_FULL_ERROR") == "1"
os.environ["HYDRA_FULL_ERROR"] = "1"

from lossbench import schemas  # noqa: E402  (after LOSSBENCH_ROOT: the typed config schemas)
from lossbench.errors import LossbenchError, user_message  # noqa: E402
from lossbench.training.task import main as run  # noqa: E402  (MLflow, the store, Lightning, the run)

schemas.register()
gc.freeze()
gc.enable()


def stop(err: BaseException, message: str) -> None:
    """One message on stderr (after the traceback, if HYDRA_FULL_ERROR=1), and the exit code."""
    if SHOW_TRACEBACK:
        traceback.print_exception(err)
    print(f"lossbench: {message}", file=sys.stderr)
    sys.exit(getattr(err, "exit_code", 2))


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> str | None:
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
