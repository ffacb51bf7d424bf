# One job per planned run (keyed by the hash of its resolved configuration, which the
# job receives whole as JSON and writes to results/runs/<id>/config.yaml).
import json


rule run:
    input:
        features=lambda w: feature_markers(RUNS[w.run_id].dataset),
    output:
        f"{RESULTS}/runs/{{run_id}}/summary.json",
    params:
        cfg=lambda w: json.dumps(RUNS[w.run_id].config, sort_keys=True),
    log:
        f"{RESULTS}/logs/runs/{{run_id}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/run/{{run_id}}.tsv"
    threads: config["threads"]
    resources:
        gpu=config["gpu_per_run"],
    shell:
        "moleflow run --config-json {params.cfg:q} --out {RESULTS}/runs/{wildcards.run_id} --quiet --threads {threads} > {log} 2>&1"


for _study, _ids in PLAN.studies.items():

    rule:
        name:
            f"study_{_study}"
        input:
            expand(f"{RESULTS}/runs/{{run_id}}/summary.json", run_id=_ids),
