"""``hydra/launcher=fused``: lossbench's launcher that trains a sweep's compatible jobs side by
side (``lossbench.fused``). Registered in Hydra's ConfigStore when Hydra discovers plugins."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.lossbench_fused.fused_launcher.FusedLauncher"
    # the most runs trained side by side in one group (GPU memory grows with it)
    max_group: int = 64


ConfigStore.instance().store(
    group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="lossbench"
)
