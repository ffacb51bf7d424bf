"""The feature cache's entry format, value by value: what a writer commits is what a reader gets, in the dtypes the
training and the metrics rely on (float16 or float32 patches, float32 router features, int8 labels, bool masks), in a
hidden temporary folder until one rename commits it, and rows handed to torch as writable float32."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from moleflow.continual.tasks import rows_on
from moleflow.features.cache import EntryWriter, is_complete, load_entry


def _write(final: Path, dtype: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    patches = rng.normal(size=(3, 2, 2, 4)).astype(np.float32)
    router = rng.normal(size=(3, 4)).astype(np.float32)
    labels = np.array([0, 1, 1], dtype=np.int8)
    masks = rng.random((3, 5, 5)) > 0.5
    kwargs = {} if dtype is None else {"dtype": dtype}
    with EntryWriter(final, 3, (2, 2, 4), mask_size=5, **kwargs) as writer:
        hidden = [p.name for p in final.parent.iterdir() if p.name != final.name]
        assert len(hidden) == 1 and hidden[0].startswith(f".{final.name}.tmp-")  # hidden until committed
        assert not final.exists()
        writer.write(0, patches[:2], router[:2], labels[:2], masks[:2])
        writer.write(2, patches[2:], router[2:], labels[2:], masks[2:])
        writer.meta = {"category": "cap", "n": 3}
    return patches, router, labels, masks


@pytest.mark.parametrize("dtype, expected", [(None, np.float16), ("float32", np.float32)])
def test_an_entry_reads_back_what_was_written_in_its_dtypes(tmp_path: Path, dtype: str | None, expected: type) -> None:
    final = tmp_path / "cache" / "entry"
    final.parent.mkdir()
    patches, router, labels, masks = _write(final, dtype)
    assert is_complete(final) and [p.name for p in final.parent.iterdir()] == ["entry"]  # one rename, no debris
    assert oct(os.stat(final).st_mode & 0o777) == "0o755"  # a shared cache is readable by others
    entry = load_entry(final)
    assert entry.patches.dtype == expected and entry.patches.shape == (3, 2, 2, 4)  # float16 by default
    np.testing.assert_array_equal(np.asarray(entry.patches), patches.astype(expected))
    assert entry.router.dtype == np.float32 and entry.labels.dtype == np.int8
    np.testing.assert_array_equal(entry.router, router)
    np.testing.assert_array_equal(entry.labels, labels)
    assert entry.masks is not None and entry.masks.dtype == np.bool_
    np.testing.assert_array_equal(entry.masks, masks)
    assert json.loads((final / "meta.json").read_text()) == {"category": "cap", "n": 3}


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError, match="boom"):
        with EntryWriter(final, 2, (1, 1, 2), mask_size=None) as writer:
            writer.write(0, np.zeros((1, 1, 1, 2)), np.zeros((1, 2)), np.zeros(1), None)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_rows_reach_torch_as_writable_float32(dtype: type) -> None:
    rows: np.ndarray = (np.arange(12, dtype=np.float64) / 7).reshape(3, 4).astype(dtype)
    rows.setflags(write=False)  # a read-only memmap view
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns of a read-only array it cannot own
        tensor = rows_on(rows, torch.device("cpu"))
    out = tensor.numpy()
    assert tensor.dtype == torch.float32 and tensor.shape == rows.shape
    np.testing.assert_array_equal(out, rows.astype(np.float32))
    if dtype is np.float32:
        assert not np.shares_memory(out, rows)  # a copy: the cache is never written through


FEATURES = {
    "backbone": "tf_efficientnet_lite0",
    "pretrained": True,
    "init_seed": 0,
    "resize": 160,
    "input_size": 160,
    "layers": ["blocks.2", "blocks.4"],
    "aggregation": 3,
    "embed_dim": 128,
    "fusion": "mean",
    "grid": None,
    "resize_mode": "square",
    "cache_dtype": "float16",
}


@pytest.mark.parametrize(
    "changes, key",
    [
        ({}, "ef160065fa7e0c8372d6"),  # square and float16 add no field: entries written before those keys stay valid
        ({"cache_dtype": "float32"}, "d806dcdddeaf26f56a62"),
        ({"resize_mode": "short_side"}, "51dde7ba0a86167af31e"),
        ({"pretrained": False, "init_seed": 3}, "de09ade72d42cb02bc51"),
    ],
)
def test_an_entrys_key_is_stable_across_releases(changes: dict, key: str) -> None:
    """A cache key is a user's cache: a release that changed it silently would extract every category again (or,
    worse, mix settings). These are the keys of fixed settings; a deliberate change bumps ``CACHE_FORMAT``."""
    from moleflow.features.cache import cache_fields, entry_key

    fields = cache_fields({"features": {**FEATURES, **changes}}, "fp0", "cap", "train", "package:lite0")
    assert entry_key(fields) == key


def _files(root: Path) -> list:
    from moleflow.data.layouts import Sample

    (root / "cap").mkdir(parents=True)
    (root / "cap" / "a.png").write_bytes(b"image a")
    (root / "cap" / "b.png").write_bytes(b"image b")
    (root / "cap" / "b_mask.png").write_bytes(b"mask b")
    return [
        Sample(root / "cap" / "a.png", None, 0, "good"),
        Sample(root / "cap" / "b.png", root / "cap" / "b_mask.png", 1, "crack"),
    ]


def test_a_datasets_fingerprint_is_its_names_labels_masks_and_bytes(tmp_path: Path) -> None:
    from moleflow.features.cache import dataset_fingerprint

    samples = _files(tmp_path / "data")
    value = dataset_fingerprint(tmp_path / "data", samples)
    assert value == "e51ad6df679cdb8ffa2ca88fa0272115"  # 16 bytes of BLAKE2b over the listing and the files
    (tmp_path / "data" / "cap" / "b_mask.png").write_bytes(b"mask B")  # one byte of one mask
    assert dataset_fingerprint(tmp_path / "data", samples) != value


def test_the_fingerprint_memo_is_read_before_the_files(tmp_path: Path) -> None:
    """With a memo folder the fingerprint is stored under the files' stat signature (32 hex digits) and read back
    without reading the files again."""
    from moleflow.features.cache import dataset_fingerprint

    samples = _files(tmp_path / "data")
    memo = tmp_path / "memo"
    memo.mkdir()
    value = dataset_fingerprint(tmp_path / "data", samples, memo)
    (written,) = memo.iterdir()
    assert re.fullmatch(r"[0-9a-f]{32}\.txt", written.name) and written.read_text() == value + "\n"
    written.write_text("from the memo\n")
    assert dataset_fingerprint(tmp_path / "data", samples, memo) == "from the memo"
    assert dataset_fingerprint(tmp_path / "data", samples) == value  # without a memo folder: the files


def test_a_writer_makes_missing_parent_folders(tmp_path: Path) -> None:
    final = tmp_path / "cache" / "cap" / "train" / "entry"
    with EntryWriter(final, 1, (1, 1, 2), mask_size=None) as writer:
        writer.write(0, np.ones((1, 1, 1, 2)), np.ones((1, 2)), np.zeros(1), None)
    assert is_complete(final)


@pytest.mark.parametrize("where", ["folder", "reserve", "finish"])
def test_a_full_disk_is_one_error_naming_the_entry_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """ENOSPC while making the temporary folder, reserving the arrays or writing the small files: one
    ``DiskFullError`` naming the entry (never the bare OSError), and no folder left behind."""
    import errno

    import moleflow.features.cache as cache
    from moleflow.errors import DiskFullError

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    target = {
        "folder": (cache.tempfile, "mkdtemp"),
        "reserve": (cache, "_reserved_memmap"),
        "finish": (cache.np, "save"),
    }
    monkeypatch.setattr(*target[where], full)
    final = tmp_path / "entry"
    with pytest.raises(DiskFullError, match=f"no space left on the device of {re.escape(str(final))}"):
        with EntryWriter(final, 1, (1, 1, 2), mask_size=3) as writer:
            writer.write(0, np.ones((1, 1, 1, 2)), np.ones((1, 2)), np.zeros(1), np.zeros((1, 3, 3), dtype=bool))
    assert list(tmp_path.iterdir()) == []


def test_a_second_writer_of_a_committed_entry_leaves_the_first_and_no_debris(tmp_path: Path) -> None:
    """Two processes extracting the same entry: the first rename commits; the second finds a complete entry, keeps
    it (it is identical; here its meta differs so that the test can tell) and removes its own temporary folder."""
    final = tmp_path / "entry"
    for marker in ("first", "second"):
        with EntryWriter(final, 1, (1, 1, 2), mask_size=None) as writer:
            writer.write(0, np.ones((1, 1, 1, 2)), np.ones((1, 2)), np.zeros(1), None)
            writer.meta = {"writer": marker}
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]
    assert json.loads((final / "meta.json").read_text()) == {"writer": "first"}


def test_an_entry_without_meta_writes_an_empty_record(tmp_path: Path) -> None:
    final = tmp_path / "entry"
    with EntryWriter(final, 1, (1, 1, 2), mask_size=None) as writer:
        writer.write(0, np.ones((1, 1, 1, 2)), np.ones((1, 2)), np.zeros(1), None)
    assert json.loads((final / "meta.json").read_text()) == {}


@pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="posix_fallocate is POSIX-only")
def test_the_patch_array_is_allocated_before_it_is_written(tmp_path: Path) -> None:
    """A sparse memmap would meet a full disk only at the first page it cannot back (SIGBUS); the writer reserves
    every block up front, so the file's allocated blocks cover its size before any row is written."""
    final = tmp_path / "entry"
    with EntryWriter(final, 64, (16, 16, 64), mask_size=None, dtype="float32") as writer:
        patches = writer.tmp / "patches.npy"
        assert os.stat(patches).st_blocks * 512 >= os.stat(patches).st_size > 64 * 16 * 16 * 64 * 4
        writer.write(0, np.zeros((64, 16, 16, 64)), np.zeros((64, 64)), np.zeros(64), None)
