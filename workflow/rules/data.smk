# The embedded default dataset, generated once per dataset that asks for it.
GENERATED = PLAN.generated  # {root: {"generate": settings, "categories": [...]}}


rule synth:
    output:
        "{root}/synth.json",
    wildcard_constraints:
        root="|".join(GENERATED) or "^$",
    params:
        gen=lambda w: GENERATED[w.root]["generate"],
        categories=lambda w: " ".join(GENERATED[w.root]["categories"]),
    log:
        "{root}.synth.log",
    benchmark:  # per-job wall time (python -m benchmarks.breakdown)
        f"{RESULTS}/benchmarks/synth/{{root}}.tsv"
    conda:
        ENVIRONMENT
    shell:
        "moleflow synth {wildcards.root} --seed {params.gen[seed]} --size {params.gen[size]} "
        "--train {params.gen[train]} --test-good {params.gen[test_good]} --test-defect {params.gen[test_defect]} "
        "$([ -n '{params.categories}' ] && echo --categories {params.categories}) > {log} 2>&1"
