"""On-disk feature cache.

One entry per (dataset content fingerprint, category, split, backbone, weights,
input size, embedding settings). An entry is a folder::

    <cache_dir>/<category>-<split>-<key>/
        patches.npy   float32 or float16 (features.cache_dtype) (N, H, W, D)  patch embeddings (read memory-mapped)
        router.npy    float32 (N, D)        router features (global mean of the float32 embedding)
        labels.npy    int8    (N,)          0 normal, 1 anomalous
        masks.npy     bool    (N, S, S)     ground truth at input size (test split only)
        meta.json     the key, the samples (paths relative to the dataset root), timings

It is written into a temporary folder and renamed into place, so a half-written
entry is never read; a changed setting or a changed dataset file changes ``key``.
The dataset fingerprint hashes every file's bytes; a stat memo (path, size,
mtime) skips re-hashing unchanged files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moleflow.data.layouts import Sample
from moleflow.errors import disk_full
from moleflow.io import write_text_atomic

CACHE_FORMAT = 1


@dataclass
class FeatureSet:
    """Cached features of one (category, split).

    Attributes:
        patches: ``(N, H, W, D)`` float32 or float16 (``features.cache_dtype``), memory-mapped.
        router: ``(N, D)`` float32 router features.
        labels: ``(N,)`` int8 image labels.
        masks: ``(N, S, S)`` bool ground truth, or ``None`` for the train split.
        meta: the entry's ``meta.json``.
        path: the entry folder.
    """

    patches: np.ndarray
    router: np.ndarray
    labels: np.ndarray
    masks: np.ndarray | None
    meta: dict[str, Any]
    path: Path

    @property
    def images(self) -> list[str]:
        """Image paths relative to the dataset root, in entry order."""
        return [s["image"] for s in self.meta["samples"]]

    @property
    def defects(self) -> list[str]:
        """Defect type per image (``"good"`` for normal images)."""
        return [s["defect"] for s in self.meta["samples"]]


def _stat_signature(root: Path, samples: list[Sample]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for sample in samples:
        for path in (sample.image, sample.mask):
            if path is not None:
                st = path.stat()
                digest.update(f"{path.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}\n".encode())
    return digest.hexdigest()


def dataset_fingerprint(root: Path, samples: list[Sample], memo_dir: Path | None = None) -> str:
    """Content fingerprint of the samples' files (names, labels, masks and bytes)."""
    root = Path(root)
    memo = None
    if memo_dir is not None:
        memo = memo_dir / f"{_stat_signature(root, samples)}.txt"
        if memo.is_file():
            return memo.read_text().strip()
    digest = hashlib.blake2b(digest_size=16)
    for sample in samples:
        mask = str(sample.mask.relative_to(root)) if sample.mask is not None else ""
        digest.update(f"{sample.image.relative_to(root)}|{sample.label}|{sample.defect}|{mask}\n".encode())
        for path in (sample.image, sample.mask):
            if path is not None:
                digest.update(path.read_bytes())
    value = digest.hexdigest()
    if memo is not None:
        write_text_atomic(memo, value + "\n")
    return value


def cache_fields(
    config: dict[str, Any], fingerprint: str, category: str, split: str, weights_id: str | None
) -> dict[str, Any]:
    """Everything that identifies a cache entry."""
    feats = config["features"]
    # the input normalisation is a function of the backbone (its timm pretrained configuration), keyed by it
    return {
        "dataset": fingerprint,
        "category": category,
        "split": split,
        "backbone": feats["backbone"],
        "pretrained": feats["pretrained"],
        "weights": weights_id,
        "init_seed": None if feats["pretrained"] else feats["init_seed"],
        "resize": feats["resize"],
        "input_size": feats["input_size"],
        "layers": list(feats["layers"]),
        "aggregation": feats["aggregation"],
        "embed_dim": feats["embed_dim"],
        "fusion": feats["fusion"],
        "grid": feats["grid"],
        # keyed only where they differ from what every earlier entry was (square resize, float16), so those stay valid
        **({"resize_mode": feats["resize_mode"]} if feats["resize_mode"] != "square" else {}),
        **({"dtype": feats["cache_dtype"]} if feats["cache_dtype"] != "float16" else {}),
    }


def entry_key(fields: dict[str, Any]) -> str:
    """Hash of the entry's identifying fields."""
    blob = json.dumps({"format": CACHE_FORMAT, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def entry_dir(cache_dir: Path, category: str, split: str, key: str) -> Path:
    """Folder of an entry."""
    return Path(cache_dir) / f"{category}-{split}-{key}"


def load_entry(path: Path) -> FeatureSet:
    """Read a complete entry (patch embeddings memory-mapped)."""
    meta = json.loads((path / "meta.json").read_text())
    masks_path = path / "masks.npy"
    return FeatureSet(
        patches=np.load(path / "patches.npy", mmap_mode="r"),
        router=np.load(path / "router.npy"),
        labels=np.load(path / "labels.npy"),
        masks=np.load(masks_path, mmap_mode="r") if masks_path.is_file() else None,
        meta=meta,
        path=path,
    )


def is_complete(path: Path) -> bool:
    """Whether ``path`` holds a finished entry (the rename is the commit point)."""
    return (path / "meta.json").is_file()


def _reserved_memmap(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> np.memmap:
    """A writable ``.npy`` memmap whose blocks are allocated now (``posix_fallocate``).

    A sparse memmap on a full disk kills the process with SIGBUS at the first page it
    cannot back; reserving the space first turns that into an ``OSError`` here.
    """
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as handle:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
    return array


class EntryWriter:
    """Write an entry into a temporary folder, then commit it with one rename.

    Example:
        >>> with EntryWriter(final_dir, n, (h, w, d), mask_size=224) as w:  # doctest: +SKIP
        ...     w.write(0, patches, router, labels, masks)
        ...     w.meta = {...}
    """

    def __init__(
        self, final: Path, n: int, shape: tuple[int, int, int], mask_size: int | None, dtype: str = "float16"
    ) -> None:
        self.final = Path(final)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.tmp-", dir=self.final.parent))
        except OSError as exc:
            raise disk_full(exc, self.final) or exc from None
        self.dtype = np.dtype(dtype)
        try:
            self.patches = _reserved_memmap(self.tmp / "patches.npy", self.dtype, (n, *shape))
            self.masks = (
                _reserved_memmap(self.tmp / "masks.npy", np.dtype(bool), (n, mask_size, mask_size))
                if mask_size
                else None
            )
        except BaseException as exc:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise disk_full(exc, self.final) or exc from None
        self.router = np.zeros((n, shape[-1]), dtype=np.float32)
        self.labels = np.zeros((n,), dtype=np.int8)
        self.meta: dict[str, Any] = {}

    def write(
        self, start: int, patches: np.ndarray, router: np.ndarray, labels: np.ndarray, masks: np.ndarray | None
    ) -> None:
        """Store a batch of ``B`` rows starting at ``start``."""
        end = start + len(patches)
        self.patches[start:end] = patches.astype(self.dtype)
        self.router[start:end] = router
        self.labels[start:end] = labels
        if self.masks is not None and masks is not None:
            self.masks[start:end] = masks

    def _finish_files(self) -> None:
        """Flush the memmaps and write the small arrays and ``meta.json`` into the temporary folder."""
        self.patches.flush()
        del self.patches
        if self.masks is not None:
            self.masks.flush()
            del self.masks
        np.save(self.tmp / "router.npy", self.router)
        np.save(self.tmp / "labels.npy", self.labels)
        (self.tmp / "meta.json").write_text(json.dumps(self.meta, indent=1))

    def __enter__(self) -> EntryWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            self._finish_files()
        except BaseException as failure:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise disk_full(failure, self.final) or failure from None
        os.chmod(self.tmp, 0o755)  # mkdtemp makes it private; a shared cache must be readable
        if self.final.exists() and not is_complete(self.final):
            shutil.rmtree(self.final, ignore_errors=True)  # debris that was never a committed entry
        try:
            os.rename(self.tmp, self.final)
        except OSError:  # another process committed the same entry first: theirs is identical
            shutil.rmtree(self.tmp, ignore_errors=True)
