"""Studies over many runs: learning-rate tuning with Optuna and its shared storage."""
