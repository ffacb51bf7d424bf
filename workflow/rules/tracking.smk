# MLflow mirror: the store and experiments are created in one job before the fan-out.
import json
import re
from pathlib import Path

from moleflow.tracking.mlflow_log import experiment_name

MLFLOW_URI = config.get("mlflow", {}).get("tracking_uri") or ""


rule mlflow_init:
    output:
        "{results}/mlflow/init.json",
    wildcard_constraints:  # a helper, not a target (see runs.smk)
        results=re.escape(RESULTS),
    params:
        uri=f"--uri {MLFLOW_URI}" if MLFLOW_URI else "",
        # the plan's keys are "<study>/<dataset>" (its files' layout); MLflow's names have no slash
        experiments=" ".join(f"'{experiment_name(*PLAN.experiment_parts[e])}'" for e in PLAN.experiments),
        descriptions=json.dumps(
            {experiment_name(*PLAN.experiment_parts[e]): text for e, text in PLAN.experiment_descriptions.items()},
            sort_keys=True,
        ),
    log:
        "{results}/logs/mlflow_init.log",
    benchmark:
        "{results}/benchmarks/mlflow_init/init.tsv"
    localrule: True
    conda:
        ENVIRONMENT
    shell:
        "moleflow track init --results {wildcards.results} {params.uri} --experiments {params.experiments} --descriptions-json {params.descriptions:q} --record {output} > {log} 2>&1"


# One job per study and dataset: each `moleflow track study` process pays MLflow's import
# (about 3.4 s, measured) once for all of the study's runs, not once per run; logging a
# run again replaces its earlier MLflow run, so a rerun of the job is idempotent.
STUDY_RUNS = PLAN.study_runs


rule track:
    input:
        summaries=lambda w: [f"{RESULTS}/runs/{rid}/summary.json" for rid, _ in STUDY_RUNS[f"{w.study}/{w.dataset}"]],
        store=f"{RESULTS}/mlflow/init.json",
    output:
        f"{RESULTS}/mlflow/logged/{{study}}/{{dataset}}.json",
    params:
        uri=f"--uri {MLFLOW_URI}" if MLFLOW_URI else "",
        runs=lambda w: " ".join(
            f"--run '{RESULTS}/runs/{rid}={variant}'" for rid, variant in STUDY_RUNS[f"{w.study}/{w.dataset}"]
        ),
        results=lambda w, input: str(Path(input.store).parents[1]),
        experiment=lambda w: experiment_name(w.study, w.dataset),
    log:
        f"{RESULTS}/logs/track/{{study}}/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/track/{{study}}/{{dataset}}.tsv"
    wildcard_constraints:
        study="[^/]+",
        dataset="[^/]+",
    conda:
        ENVIRONMENT
    shell:
        "moleflow track study --results {params.results} {params.uri} --experiment {params.experiment:q} "
        "{params.runs} --record {output} > {log} 2>&1"
