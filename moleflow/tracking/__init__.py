"""MLflow mirror of the runs (files under results/ stay the source of truth)."""

from moleflow.tracking.mlflow_log import default_tracking_uri, init_store, log_memberships, log_run

__all__ = ["default_tracking_uri", "init_store", "log_memberships", "log_run"]
