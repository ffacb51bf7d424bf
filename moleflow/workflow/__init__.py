"""Planning the Snakemake workflow: studies x seeds x task orders x datasets -> runs keyed by config hash."""

from moleflow.workflow.plan import PlannedRun, plan_runs

__all__ = ["PlannedRun", "plan_runs"]
