"""Task order and the cached features each task trains and is evaluated on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moleflow.config import Config
from moleflow.data.layouts import list_categories, no_categories
from moleflow.errors import ConfigError
from moleflow.features import FeatureSet, FeatureStore


def task_order(config: Config) -> list[str]:
    """Category names in training order (``task_order``: given, alphabetical or random)."""
    ds = config["dataset"]
    names = list(ds["categories"]) or list_categories(ds["kind"], ds["root"])
    if not names:
        raise no_categories(ds["kind"], ds["root"])
    if len(set(names)) != len(names):
        raise ConfigError(f"dataset.categories lists a category twice: {names}")
    order = config["task_order"]
    if order == "alphabetical":
        return sorted(names)
    if order == "random":
        rng = np.random.default_rng(config["order_seed"])
        return [names[i] for i in rng.permutation(len(names))]
    return names


@dataclass
class TaskData:
    """One category's cached features: ``train`` and ``test`` :class:`FeatureSet`s."""

    category: str
    train: FeatureSet
    test: FeatureSet


def load_tasks(config: Config, store: FeatureStore) -> list[TaskData]:
    """Features of every task, in order (extracted on a cache miss)."""
    return [TaskData(name, store.get(name, "train"), store.get(name, "test")) for name in task_order(config)]
