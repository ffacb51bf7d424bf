# One job per planned run (keyed by the hash of its resolved configuration).


rule run_config:
    output:
        f"{RESULTS}/runs/{{run_id}}/config.yaml",
    params:
        cfg=lambda w: RUNS[w.run_id].config,
    localrule: True
    run:
        from moleflow.io import write_text_atomic

        write_text_atomic(output[0], yaml.safe_dump(params.cfg, sort_keys=False))


rule run:
    input:
        cfg=f"{RESULTS}/runs/{{run_id}}/config.yaml",
        features=lambda w: feature_markers(RUNS[w.run_id].dataset),
    output:
        f"{RESULTS}/runs/{{run_id}}/summary.json",
    log:
        f"{RESULTS}/logs/runs/{{run_id}}.log",
    threads: config["threads"]
    resources:
        gpu=1,
    shell:
        "moleflow run --config {input.cfg} --out {RESULTS}/runs/{wildcards.run_id} --quiet > {log} 2>&1"


for _study, _ids in STUDIES.items():

    rule:
        name:
            f"study_{_study}"
        input:
            expand(f"{RESULTS}/runs/{{run_id}}/summary.json", run_id=_ids),
