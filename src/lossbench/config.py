"""Composing the run config in-process (Hydra's compose API), as ``train.py`` would get it.

For the benchmark and the tests: no subprocess, so no second ~10 s of imports.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from lossbench import schemas

ROOT = Path(__file__).resolve().parents[2]  # the project checkout (train.py, conf/)
CONF = ROOT / "conf"


def compose_run_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """The job config for ``overrides``, with HydraConfig set as in a real single run whose
    output directory is ``output_dir``."""
    os.environ.setdefault("LOSSBENCH_ROOT", str(ROOT))
    schemas.register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # a task function gets the job config alone
    return cfg
