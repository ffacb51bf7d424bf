"""Feature cache: backbone passes per training image, and the wall time of training both ways.

The harness extracts each image's features once (one job per dataset and category) and
every run of every study trains from the cache; the authors' code runs the backbone on
every batch of every epoch. Both are measured in one process on the same generated
data and configuration: a run's training over its tasks with the cache (cold: the
extraction is counted; then a second run that finds the cache warm) and with the
backbone re-run on every batch (:class:`LiveFeatures`). Evaluation is the same both
ways and is left out. Backbone passes are counted by wrapping ``FeatureExtractor``.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from benchmarks.common import Result, device
from moleflow.config import load_config, load_profile
from moleflow.continual.learner import Learner
from moleflow.continual.settings import TrainSettings
from moleflow.continual.train import train_task
from moleflow.data import load_category
from moleflow.data.synth import SynthCounts, generate
from moleflow.data.transforms import load_image
from moleflow.features import FeatureExtractor, FeatureStore
from moleflow.planning import plan_runs

SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"categories": ["cap", "tile"], "size": 32, "train": 4, "epochs": 2, "dim": 16},
    "full": {"categories": ["cap", "fabric", "tile"], "size": 128, "train": 40, "epochs": 8, "dim": 128},
}


class PassCounter:
    """Counts the images that go through any :class:`FeatureExtractor` while active."""

    def __init__(self) -> None:
        self.images = 0

    @contextlib.contextmanager
    def active(self) -> Iterator[PassCounter]:
        original = FeatureExtractor.__call__
        counter = self

        def counted(extractor: FeatureExtractor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            counter.images += int(images.shape[0])
            return original(extractor, images)

        FeatureExtractor.__call__ = counted  # type: ignore[method-assign,assignment]  # counting passes, restored below
        try:
            yield self
        finally:
            FeatureExtractor.__call__ = original  # type: ignore[method-assign]


class LiveFeatures:
    """Array-like ``(N, H, W, D)`` whose rows are computed by the backbone on every access."""

    def __init__(
        self, extractor: FeatureExtractor, paths: list[Path], resize: int, crop: int, shape: tuple[int, ...]
    ) -> None:
        self.extractor, self.paths, self.resize, self.crop, self.shape = extractor, paths, resize, crop, shape

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        images = torch.from_numpy(
            np.stack([load_image(self.paths[i], self.resize, self.crop) for i in np.atleast_1d(index)])
        )
        patches, _ = self.extractor(images)
        return patches.numpy()


def _train_all(config: dict, store: FeatureStore, live: FeatureExtractor | None) -> float:
    """Train every task of ``config`` (cached features, or re-extracted per batch with ``live``); seconds."""
    feats = config["features"]
    start = time.perf_counter()
    learner: Learner | None = None
    for task, category in enumerate(sorted(config["dataset"]["categories"])):
        train = store.get(category, "train")
        learner = learner or Learner.from_config(config, train.patches.shape[-1]).to(device())
        learner.add_task(np.asarray(train.router))
        patches: np.ndarray | LiveFeatures = train.patches
        if live is not None:
            paths = [s.image for s in load_category("mvtec", config["dataset"]["root"], category).train]
            patches = LiveFeatures(live, paths, feats["resize"], feats["input_size"], train.patches.shape)
        assert train_task(learner, task, patches, TrainSettings.from_config(config), device()).status == "ok"
    return time.perf_counter() - start


def _study_passes() -> tuple[int, int]:
    """Backbone passes per training image over the embedded default workflow: cached, and re-extracted per epoch."""
    workflow = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())
    runs = plan_runs(workflow)
    per_epoch = sum(run.config["training"]["epochs"] for run in runs.values())
    return 1, per_epoch


def run(scale: str = "full") -> Result:
    size = SIZES[scale]
    result = Result(
        "feature_cache",
        "Feature cache against re-extraction every epoch",
        ["features", "backbone passes / training image", "training wall time (s)", "relative to cached"],
        command=f"python -m benchmarks --only feature_cache --scale {scale}",
    )
    with tempfile.TemporaryDirectory(prefix="moleflow-bench-") as tmp:
        root = Path(tmp) / "data"
        generate(
            root,
            seed=0,
            size=size["size"],
            categories=size["categories"],
            counts=SynthCounts(train=size["train"], test_good=1, test_per_defect=1),
        )
        config = load_config(
            overrides=[
                f"dataset.root={root}",
                f"dataset.categories={size['categories']}",
                f"features.cache_dir={tmp}/cache",
                f"features.resize={size['size']}",
                f"features.input_size={size['size']}",
                f"features.embed_dim={size['dim']}",
                f"training.epochs={size['epochs']}",
                "device=auto",
            ],
            base=load_profile("cpu"),
        )
        n_train = size["train"] * len(size["categories"])
        counter = PassCounter()
        with counter.active():
            cold = _train_all(config, FeatureStore(config, progress=False), None)
            cold_passes = counter.images
            warm = _train_all(config, FeatureStore(config, progress=False), None)
            warm_passes = counter.images - cold_passes
            live = _train_all(config, FeatureStore(config, progress=False), FeatureExtractor.from_config(config))
            live_passes = counter.images - cold_passes - warm_passes
    result.add("cached, cold (extraction counted)", cold_passes / n_train, cold, 1.0)
    result.add("cached, warm (a second run)", warm_passes / n_train, warm, warm / cold)
    result.add("re-extracted every epoch", live_passes / n_train, live, live / cold)
    cached, per_epoch = _study_passes()
    result.notes.append(
        f"{len(size['categories'])} generated categories x {size['train']} training images at {size['size']} px, "
        f"CPU profile with {size['epochs']} epochs per task, device {device()}. "
        f"Over the whole embedded default workflow (config/config.yaml, every study) a training image goes through the "
        f"backbone {cached} time with the cache and {per_epoch} times if every run re-extracted every epoch."
    )
    return result
