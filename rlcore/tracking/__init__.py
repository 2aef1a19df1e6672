"""MLflow: the store, runs and their metrics, the model registry."""
