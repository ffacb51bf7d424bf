"""Planning the Snakemake workflow: studies x seeds x task orders x datasets -> runs keyed by config hash."""

from moleflow.planning.plan import (
    PlannedRun,
    WorkflowPlan,
    dataset_categories,
    dataset_config,
    plan_runs,
    write_records,
)

__all__ = ["PlannedRun", "WorkflowPlan", "dataset_categories", "dataset_config", "plan_runs", "write_records"]
