"""Training one run: the LightningModule, its metrics, and the run from config to record."""
