# Tables and figures from the run directories (the same code as `python -m analysis`).
import hashlib
import json
import re

import yaml

PLAN_RECORD = PLAN.record()


rule workflow_config:  # the configuration and the plan record the analysis reads
    output:
        config="{results}/workflow.yaml",
        plan="{results}/plan.json",
    wildcard_constraints:  # a helper, not a target (see runs.smk)
        results=re.escape(RESULTS),
    params:
        cfg=lambda w: dict(config),
        plan_digest=hashlib.sha256(json.dumps(PLAN_RECORD, sort_keys=True).encode()).hexdigest(),
    localrule: True
    run:
        from moleflow.io import write_json_atomic, write_text_atomic

        write_text_atomic(output.config, yaml.safe_dump(params.cfg, sort_keys=False))
        write_json_atomic(output.plan, PLAN_RECORD)


rule all_tables:
    input:
        plan=f"{RESULTS}/plan.json",
        summaries=expand(f"{RESULTS}/runs/{{run_id}}/summary.json", run_id=sorted(RUNS)),
        tracked=[f"{RESULTS}/mlflow/logged/{experiment}.json" for experiment in PLAN.experiments],
    output:
        runs=f"{RESULTS}/runs.csv",
        index=f"{RESULTS}/tables/index.csv",
        complete=f"{RESULTS}/tables/complete.json",  # absent after an analysis of a partial folder
        # what `snakemake all_tables --report results/report.html` shows (captions in workflow/report/)
        audit=report(directory(f"{RESULTS}/report/audit"), patterns=["{name}.html"], caption="../report/audit.rst",
                     category="1. Claims audit"),
        tables=report(directory(f"{RESULTS}/report/tables"), patterns=["{name}.html"], caption="../report/tables.rst",
                      category="2. Tables"),
        figures=report(directory(f"{RESULTS}/figures"), patterns=["{name}.png"], caption="../report/figures.rst",
                       category="3. Figures"),
    log:
        f"{RESULTS}/logs/analysis.log",
    benchmark:
        f"{RESULTS}/benchmarks/all_tables/all_tables.tsv"
    localrule: True
    shell:
        "python -m analysis --plan {input.plan} --results {RESULTS} > {log} 2>&1"
