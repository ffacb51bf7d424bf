# Helpers shared by the rules.
import yaml

from moleflow.data.layouts import list_categories
from moleflow.data.synth import DEFAULT_CATEGORIES


def dataset_categories(name):
    """Categories of a workflow dataset (generated ones are known before they exist)."""
    ds = config["datasets"][name]
    if ds.get("categories"):
        return list(ds["categories"])
    if ds.get("generate"):
        return list(DEFAULT_CATEGORIES)
    return list_categories(ds["kind"], ds["root"])


def dataset_marker(name):
    """What must exist before a dataset is read: the generator's marker, or nothing."""
    ds = config["datasets"][name]
    return [f"{ds['root']}/synth.json"] if ds.get("generate") else []


def feature_markers(name):
    return [f"{RESULTS}/features/{name}/{c}.json" for c in dataset_categories(name)]
