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


# In the Snakemake process (a local `run:` job): MLflow's import costs about 3 s, paid
# once instead of once per run (measured: 50 track jobs took 150 s as subprocesses).
# A failed write fails this job only; the run's files under results/runs/ stay.
rule track:
    input:
        summary=f"{RESULTS}/runs/{{run_id}}/summary.json",
        store=f"{RESULTS}/mlflow/init.json",
    output:
        f"{RESULTS}/runs/{{run_id}}/mlflow.json",
    params:
        memberships=lambda w: [(f"{study}/{RUNS[w.run_id].dataset}", variant) for study, variant in RUNS[w.run_id].memberships],
    log:
        f"{RESULTS}/logs/track/{{run_id}}.log",
    localrule: True
    run:
        import traceback

        from moleflow.tracking import default_tracking_uri, log_memberships

        uri = default_tracking_uri(RESULTS, MLFLOW_URI or None)
        with open(log[0], "w") as handle:
            try:
                logged = log_memberships(uri, f"{RESULTS}/runs/{wildcards.run_id}", params.memberships, output[0])
            except Exception:
                handle.write(traceback.format_exc())
                raise
            handle.write(f"logged {RESULTS}/runs/{wildcards.run_id} to {len(logged)} MLflow experiment(s) at {uri}\n")
