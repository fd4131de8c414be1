"""Train one configuration (or sweep many with -m): `python train.py head=sigmoid loss=bce`."""

import os
import sys
from pathlib import Path

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

os.environ["LOSSBENCH_ROOT"] = str(Path(__file__).resolve().parent)
# Hydra reports a bad override (an unknown config name, a key that does not exist) and exits 1,
# like any crash. With full errors it raises instead, and we answer with exit code 2.
os.environ.setdefault("HYDRA_FULL_ERROR", "1")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> str | None:
    from lossbench.run import main as run

    return run(cfg)


if __name__ == "__main__":
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        print(f"lossbench: error in the config or overrides: {err}", file=sys.stderr)
        print("Fix: `python train.py --help` lists the config groups and options.", file=sys.stderr)
        sys.exit(2)
