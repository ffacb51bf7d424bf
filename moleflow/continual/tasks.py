"""Task order and the cached features each task trains and is evaluated on, and their rows as tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from moleflow.config import Config, load_profile
from moleflow.data.layouts import list_categories, no_categories
from moleflow.errors import ConfigError, DatasetError
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


def missing_root(config: Config) -> DatasetError:
    """The error for a ``dataset.root`` that is not there, saying how to make the CPU profile's generated one."""
    root = config["dataset"]["root"]
    hint = "point dataset.root at your dataset copy"
    if root == load_profile("cpu")["dataset"]["root"]:
        hint = f"the embedded default is generated: moleflow synth {root}"
    return DatasetError(f"dataset.root: {root} not found ({hint})")


def load_tasks(config: Config, store: FeatureStore) -> list[TaskData]:
    """Features of every task, in order (extracted on a cache miss; a cached category needs no dataset copy)."""
    try:
        return [TaskData(name, store.get(name, "train"), store.get(name, "test")) for name in task_order(config)]
    except DatasetError:
        if not Path(config["dataset"]["root"]).is_dir():
            raise missing_root(config) from None
        raise


def rows_on(rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows of a cache entry ``(..., D)`` (float16 or float32, often a read-only memmap view) as a float32 tensor on
    ``device``, the same shape; a copy, so that the cache is never written through."""
    out = np.asarray(rows, dtype=np.float32)
    return torch.from_numpy(out if out.flags.writeable else out.copy()).to(device)


class PatchRows(Protocol):
    """What training reads of its patch maps besides an array: ``len``, ``shape`` and rows by an index array."""

    shape: tuple[int, ...]

    def __len__(self) -> int: ...

    def __getitem__(self, rows: np.ndarray) -> np.ndarray: ...


class StackedRows:
    """Several ``(N_i, ...)`` arrays read as one ``(sum N_i, ...)`` array along the first axis, without a copy.

    What the joint flow trains on: every task's training feature maps (memory-mapped
    cache entries) at once. Supports ``len``, ``shape`` and indexing by an array of rows.
    """

    def __init__(self, parts: list[np.ndarray]) -> None:
        if not parts or any(p.shape[1:] != parts[0].shape[1:] for p in parts):
            raise ValueError("StackedRows needs at least one array, all with the same trailing shape")
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.offsets[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (an integer array, in the order given) as one array."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= len(self))):
            raise IndexError(f"rows must be a 1-d array of indices below {len(self)}")
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        return (
            np.stack([self.parts[p][r - self.offsets[p]] for p, r in zip(part, rows)])
            if rows.size
            else np.zeros((0, *self.shape[1:]), dtype=self.dtype)
        )


def joint_patches(tasks: list[TaskData]) -> StackedRows:
    """Every task's training feature maps ``(sum N_t, H, W, D)``, in task order (the joint flow's training set)."""
    return StackedRows([t.train.patches for t in tasks])
