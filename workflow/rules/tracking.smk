# MLflow mirror: the store and experiments are created in one job before the fan-out.
EXPERIMENTS = sorted({f"{study}/{run.dataset}" for run in RUNS.values() for study in run.studies})
MLFLOW_URI = config.get("mlflow", {}).get("tracking_uri") or ""


rule mlflow_init:
    output:
        f"{RESULTS}/mlflow/init.json",
    params:
        uri=f"--uri {MLFLOW_URI}" if MLFLOW_URI else "",
        experiments=" ".join(f"'{e}'" for e in EXPERIMENTS),
    log:
        f"{RESULTS}/logs/mlflow_init.log",
    localrule: True
    shell:
        "moleflow track init --results {RESULTS} {params.uri} --experiments {params.experiments} --record {output} > {log} 2>&1"


rule track:
    input:
        summary=f"{RESULTS}/runs/{{run_id}}/summary.json",
        store=f"{RESULTS}/mlflow/init.json",
    output:
        f"{RESULTS}/runs/{{run_id}}/mlflow.json",
    params:
        uri=f"--uri {MLFLOW_URI}" if MLFLOW_URI else "",
        experiments=lambda w: " ".join(
            f"--experiment '{study}/{RUNS[w.run_id].dataset}={variant}'" for study, variant in RUNS[w.run_id].memberships
        ),
    log:
        f"{RESULTS}/logs/track/{{run_id}}.log",
    shell:
        "moleflow track log --run-dir {RESULTS}/runs/{wildcards.run_id} --results {RESULTS} {params.uri} "
        "{params.experiments} --record {output} > {log} 2>&1"
