# Tables and figures from the run directories (the same code as `python -m analysis`).
import yaml


rule workflow_config:
    output:
        f"{RESULTS}/workflow.yaml",
    params:
        cfg=lambda w: dict(config),
    localrule: True
    run:
        from moleflow.io import write_text_atomic

        write_text_atomic(output[0], yaml.safe_dump(params.cfg, sort_keys=False))


rule all_tables:
    input:
        workflow=f"{RESULTS}/workflow.yaml",
        summaries=expand(f"{RESULTS}/runs/{{run_id}}/summary.json", run_id=sorted(RUNS)),
        tracked=[f"{RESULTS}/mlflow/logged/{experiment}.json" for experiment in PLAN.experiments],
    output:
        runs=f"{RESULTS}/runs.csv",
        index=f"{RESULTS}/tables/index.csv",
        figures=f"{RESULTS}/figures/index.csv",
        complete=f"{RESULTS}/tables/complete.json",  # absent after an analysis of a partial folder
    log:
        f"{RESULTS}/logs/analysis.log",
    localrule: True
    shell:
        "python -m analysis --config {input.workflow} --results {RESULTS} > {log} 2>&1"
