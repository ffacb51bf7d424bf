"""Atomic file writes: an output is either complete or absent, never half-written."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from moleflow.errors import disk_full

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same directory so that the final ``os.replace``
    is atomic. On any exception the temporary file is removed and ``path`` is
    left untouched; a full disk or quota is raised as a
    :class:`~moleflow.errors.DiskFullError` naming ``path`` (one line for the user).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    except OSError as exc:
        raise disk_full(exc, target) or exc from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes it private; an output gets the usual permissions
        os.replace(tmp_path, target)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        full = disk_full(exc, target)
        if full is not None:
            raise full from None
        raise


def ensure_writable_dir(path: str | os.PathLike[str], what: str) -> Path:
    """Create folder ``path`` if needed and prove it takes a file; else raise one line naming ``what`` and ``path``.

    Raises:
        MoleflowError: ``path`` is a file, lies under a file, is on a read-only file
            system, or cannot be created or written for another reason.
    """
    from moleflow.errors import MoleflowError

    folder = Path(path)
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError("it is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise MoleflowError(f"{what}: cannot write to {folder} ({reason})") from None
    return folder


def ensure_writable_file(path: str | os.PathLike[str], what: str) -> Path:
    """Prove, before any work, that file ``path`` can be written: not a folder, its folder creatable and writable.

    Raises:
        MoleflowError: one line naming ``what`` and ``path``.
    """
    from moleflow.errors import MoleflowError

    target = Path(path)
    if target.is_dir():
        raise MoleflowError(f"{what}: {target} is a folder, not a file")
    ensure_writable_dir(target.parent if str(target.parent) else Path("."), what)
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (NaN written as null)."""
    write_text_atomic(path, json.dumps(_nan_to_none(obj), indent=2, sort_keys=False) + "\n")


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj
