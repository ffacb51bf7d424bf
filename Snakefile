# MoLE-Flow workflow: datasets x studies x variants x task orders x seeds -> runs -> tables.
# Rules stay thin; the logic is in moleflow/ (planning, training) and analysis/.
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from moleflow.errors import MoleflowError
from moleflow.planning import WorkflowPlan


if not config:  # --configfile replaces the embedded default instead of being merged into it

    configfile: "config/config.yaml"



validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"  # snakemake all_tables --report results/report.html

RESULTS = config["results"]
try:
    PLAN = WorkflowPlan.from_config(config)  # every list the rules use (tested in Python)
    # each dataset's feature files: a copy that is missing or broken is found here, not inside a rule's inputs
    FEATURE_MARKERS = {ds: PLAN.feature_records(RESULTS, ds) for ds in sorted({r.dataset for r in PLAN.runs.values()})}
except MoleflowError as exc:  # a bad key or category, a missing dataset: one message, before any job starts
    raise WorkflowError(f"workflow configuration: {exc}") from None
RUNS = PLAN.runs


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/runs.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/analysis.smk"


rule all_runs:  # every run, logged to MLflow (no tables)
    input:
        expand(f"{RESULTS}/runs/{{run_id}}/summary.json", run_id=sorted(RUNS)),
        [f"{RESULTS}/mlflow/logged/{experiment}.json" for experiment in PLAN.experiments],
