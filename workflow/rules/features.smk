# Feature extraction: one job per (dataset, category), for every feature setting the runs
# reading that category use (a study may run at another resolution), so training jobs only
# read the cache.
import json

from moleflow.planning import dataset_config, write_records


rule dataset_config:
    output:
        f"{RESULTS}/configs/dataset-{{dataset}}.yaml",
    params:
        cfg=lambda w: dataset_config(config, w.dataset),
    log:
        f"{RESULTS}/logs/configs/dataset-{{dataset}}.log",
    localrule: True
    run:
        write_records({output[0]: ("yaml", params.cfg)}, log[0])


rule features:
    input:
        cfg=f"{RESULTS}/configs/dataset-{{dataset}}.yaml",
        data=lambda w: dataset_marker(w.dataset),
    output:
        f"{RESULTS}/features/{{dataset}}/{{category}}.json",
    log:
        f"{RESULTS}/logs/features/{{dataset}}/{{category}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/features/{{dataset}}/{{category}}.tsv"
    params:
        also=lambda w: json.dumps(PLAN.feature_settings(w.dataset, w.category), sort_keys=True),
    threads: config["threads"]
    conda:
        ENVIRONMENT
    shell:
        "moleflow features extract --config {input.cfg} --categories {wildcards.category} --quiet --threads {threads} "
        "--also-features {params.also:q} --record {output} > {log} 2>&1"
