"""Train one configuration (or sweep many with -m): `python train.py head=sigmoid loss=bce`."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ["LOSSBENCH_ROOT"] = str(Path(__file__).resolve().parent)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> str | None:
    from lossbench.run import main as run

    return run(cfg)


if __name__ == "__main__":
    main()
