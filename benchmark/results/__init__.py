"""Results: the per-image store (single source of truth), statistics, export, MLflow tracking."""
