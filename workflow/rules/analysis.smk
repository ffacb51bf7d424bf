# Tables and figures from the run directories (the same code as `python -m analysis`).
import hashlib
import json
import re
from pathlib import Path

from moleflow.planning import write_records

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
    log:
        "{results}/logs/workflow_config.log",
    localrule: True
    run:
        write_records({output.config: ("yaml", params.cfg), output.plan: ("json", PLAN_RECORD)}, log[0])


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
    params:
        results=lambda w, input: str(Path(input.plan).parent),
    localrule: True
    conda:
        ENVIRONMENT
    shell:
        "python -m analysis --plan {input.plan} --results {params.results} > {log} 2>&1"
