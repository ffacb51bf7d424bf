"""The feature cache's entry format, value by value: what a writer commits is what a reader gets, in the dtypes the
training and the metrics rely on (float16 or float32 patches, float32 router features, int8 labels, bool masks), in a
hidden temporary folder until one rename commits it, and rows handed to torch as writable float32."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from moleflow.features.cache import EntryWriter, float32_rows, is_complete, load_entry


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
    out = float32_rows(rows)
    assert out.dtype == np.float32 and out.flags.writeable
    np.testing.assert_array_equal(out, rows.astype(np.float32))
    if dtype is np.float32:
        assert not np.shares_memory(out, rows)  # a copy: the cache is never written through
