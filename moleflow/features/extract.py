"""Extract patch embeddings through the backbone once, and serve them from the cache.

:func:`get_features` is the only way the rest of the harness obtains features:
it returns the cached entry for (dataset content, category, split, settings),
extracting it first on a miss. Extraction batches images, runs on CUDA when
present (``device: auto``) and reports progress in images per second.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from moleflow.config import Config
from moleflow.data.check import header_size, require_same_size
from moleflow.data.layouts import Sample, load_category
from moleflow.data.transforms import load_image, load_mask
from moleflow.device import resolve_device
from moleflow.features.backbone import create_backbone, file_digest, normalization, resolve_weights
from moleflow.features.cache import (
    EntryWriter,
    FeatureSet,
    cache_fields,
    dataset_fingerprint,
    entry_dir,
    entry_key,
    is_complete,
    load_entry,
)
from moleflow.features.embedding import PatchEmbedder


class _ImageDataset(Dataset):
    def __init__(
        self,
        samples: list[Sample],
        resize: int,
        crop: int,
        with_masks: bool,
        norm: tuple[tuple[float, ...], tuple[float, ...]],
        mode: str = "square",
    ) -> None:
        self.samples, self.resize, self.crop, self.with_masks = samples, resize, crop, with_masks
        self.mean, self.std = norm
        self.mode = mode

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int, np.ndarray]:
        sample = self.samples[index]
        if self.with_masks and sample.mask is not None:  # never evaluate against a silently resized mask
            require_same_size(sample.mask, header_size(sample.mask), header_size(sample.image))
        image = load_image(sample.image, self.resize, self.crop, self.mean, self.std, self.mode)
        mask = (
            load_mask(sample.mask, self.resize, self.crop, self.mode) if self.with_masks else np.zeros((0,), dtype=bool)
        )
        return image, sample.label, mask


@dataclass
class FeatureExtractor:
    """A frozen backbone and the patch embedder, on one device."""

    backbone: torch.nn.Module
    embedder: PatchEmbedder
    device: torch.device
    images_passed: int = 0  # images the backbone's forward has seen (counted by a forward hook)

    def __post_init__(self) -> None:
        def count(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: object) -> None:
            self.images_passed += int(inputs[0].shape[0])

        self.backbone.register_forward_hook(count)

    @classmethod
    def from_config(cls, config: Config) -> FeatureExtractor:
        """Build the backbone and embedder that ``config['features']`` describes."""
        feats = config["features"]
        device = resolve_device(config["device"])
        backbone = create_backbone(
            feats["backbone"], feats["layers"], feats["pretrained"], feats["weights"], feats["init_seed"]
        ).to(device)
        embedder = PatchEmbedder(feats["embed_dim"], feats["fusion"], feats["grid"], feats["aggregation"])
        return cls(backbone, embedder, device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, S, S)`` images -> ``(B, H, W, D)`` patches and ``(B, D)`` router features (on CPU)."""
        maps = self.backbone(images.to(self.device, non_blocking=True))
        patches, router = self.embedder(maps)
        return patches.cpu(), router.cpu()


def _weights_identity(feats: dict[str, Any]) -> str | None:
    if not feats["pretrained"]:
        return None
    return file_digest(resolve_weights(feats["backbone"], feats["weights"]))


def backbone_passes_per_image(sets: list[FeatureSet]) -> float | None:
    """Backbone forward passes per image over cache entries (``None`` if an entry predates the count)."""
    counts = [s.meta.get("backbone_images") for s in sets]
    known = [int(c) for c in counts if c is not None]
    if len(known) < len(counts):
        return None
    return float(sum(known)) / max(1, sum(len(s.meta["samples"]) for s in sets))


class FeatureStore:
    """Resolve and fill cache entries for one configuration.

    The backbone is created lazily, at the first miss, so a fully cached run never
    builds it.
    """

    def __init__(self, config: Config, progress: bool = True, log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.log = log
        self.cache_dir = Path(config["features"]["cache_dir"])
        self.progress = progress
        self._extractor: FeatureExtractor | None = None
        self._weights_id: str | None | bool = False
        self.last_hit = False
        self.stats = {"hits": 0, "misses": 0, "images_extracted": 0, "extract_seconds": 0.0}

    @property
    def weights_id(self) -> str | None:
        if self._weights_id is False:
            self._weights_id = _weights_identity(self.config["features"])
        return self._weights_id  # type: ignore[return-value]

    def entry_path(self, category: str, split: str) -> tuple[Path, list[Sample], dict[str, Any]]:
        """Locate the entry of ``(category, split)`` without extracting anything."""
        ds = self.config["dataset"]
        root = Path(ds["root"])
        samples = load_category(ds["kind"], root, category).split(split)
        fingerprint = dataset_fingerprint(root, samples, memo_dir=self.cache_dir / ".fingerprints")
        fields = cache_fields(self.config, fingerprint, category, split, self.weights_id)
        return entry_dir(self.cache_dir, category, split, entry_key(fields)), samples, fields

    def get(self, category: str, split: str) -> FeatureSet:
        """Return the features of ``(category, split)``, extracting them on a miss."""
        path, samples, fields = self.entry_path(category, split)
        self.last_hit = is_complete(path)
        if self.last_hit:
            self.stats["hits"] += 1
            return load_entry(path)
        self.stats["misses"] += 1
        self._extract(path, samples, fields)
        return load_entry(path)

    def _batches(self, loader: DataLoader) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        assert self._extractor is not None
        for images, labels, masks in loader:
            patches, router = self._extractor(images)
            yield patches.numpy(), router.numpy(), labels.numpy(), masks.numpy()

    def _extract(self, path: Path, samples: list[Sample], fields: dict[str, Any]) -> None:
        if self._extractor is None:
            self._extractor = FeatureExtractor.from_config(self.config)
        feats = self.config["features"]
        with_masks = fields["split"] == "test"
        loader = DataLoader(
            _ImageDataset(
                samples,
                feats["resize"],
                feats["input_size"],
                with_masks,
                normalization(feats["backbone"]),
                feats["resize_mode"],
            ),
            batch_size=feats["batch_size"],
            num_workers=feats["num_workers"],
            shuffle=False,
        )
        root = Path(self.config["dataset"]["root"])
        passed_before = self._extractor.images_passed
        start_time = time.perf_counter()
        bar = tqdm(
            total=len(samples),
            unit="img",
            desc=f"features {fields['category']}/{fields['split']}",
            disable=None if self.progress else True,
            file=sys.stderr,
            leave=False,  # None: off when not a terminal
        )
        batches = self._batches(loader)
        first = next(batches)
        shape = tuple(first[0].shape[1:])
        with (
            bar,
            EntryWriter(
                path, len(samples), shape, feats["input_size"] if with_masks else None, feats["cache_dtype"]
            ) as writer,
        ):
            row = 0
            for patches, router, labels, masks in itertools.chain([first], batches):
                writer.write(row, patches, router, labels, masks if with_masks else None)
                row += len(patches)
                bar.update(len(patches))
            seconds = time.perf_counter() - start_time
            writer.meta = {
                "key": fields,
                "shape": [len(samples), *shape],
                "samples": [
                    {
                        "image": str(s.image.relative_to(root)),
                        "mask": str(s.mask.relative_to(root)) if s.mask else None,
                        "defect": s.defect,
                    }
                    for s in samples
                ],
                "seconds": seconds,
                "images_per_second": len(samples) / max(seconds, 1e-9),
                "device": str(self._extractor.device),
                # images through the backbone for this entry: patches and router features come from one pass
                "backbone_images": self._extractor.images_passed - passed_before,
            }
        self.stats["images_extracted"] += len(samples)
        self.stats["extract_seconds"] += seconds
        if self.log is not None:
            self.log(
                f"features {fields['category']}/{fields['split']}: {len(samples)} images in {seconds:.1f} s "
                f"({len(samples) / max(seconds, 1e-9):.1f} img/s, {self._extractor.device})"
            )
