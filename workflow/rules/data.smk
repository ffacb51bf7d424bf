# The embedded default dataset, generated once per dataset that asks for it.
GENERATED = {n: d for n, d in config["datasets"].items() if d.get("generate")}


rule synth:
    output:
        "{root}/synth.json",
    wildcard_constraints:
        root="|".join(d["root"] for d in GENERATED.values()) or "^$",
    params:
        gen=lambda w: next(d["generate"] for d in GENERATED.values() if d["root"] == w.root),
        categories=lambda w: " ".join(next(d.get("categories") or [] for d in GENERATED.values() if d["root"] == w.root)),
    log:
        "{root}.synth.log",
    shell:
        "moleflow synth {wildcards.root} --seed {params.gen[seed]} --size {params.gen[size]} "
        "--train {params.gen[train]} --test-good {params.gen[test_good]} --test-defect {params.gen[test_defect]} "
        "$([ -n '{params.categories}' ] && echo --categories {params.categories}) > {log} 2>&1"
