"""MLflow: the store, a run's records, stale runs, and the UI."""
