# Helpers shared by the rules: thin wrappers around the plan (moleflow/planning).
import yaml


def feature_markers(name):
    return PLAN.feature_records(RESULTS, name)


def dataset_marker(name):
    return PLAN.dataset_marker(name)
