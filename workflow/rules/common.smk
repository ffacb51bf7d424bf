# Helpers shared by the rules: thin wrappers around the plan (moleflow/planning).

# The software of every job: `--software-deployment-method conda` builds it from the
# repository's environment.yml (this package included, editable); without it, jobs use
# the environment Snakemake runs in.
ENVIRONMENT = "../../environment.yml"


def feature_markers(name):
    return FEATURE_MARKERS[name]  # checked with the plan (Snakefile)


def dataset_marker(name):
    return PLAN.dataset_marker(name)
