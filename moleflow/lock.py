"""An exclusive lock on an output folder for the life of the process that writes it.

Two processes writing one run folder (or one ``predict --out``) at once would each
finish "ok" and leave a folder holding half of each. :func:`folder_lock` takes an OS
file lock (``flock``) on ``FOLDER/.lock``: the kernel drops it when the process ends,
however it ends (a kill, a crash, a node's reboot), so a stale lock never blocks a
rerun. The lock file records who holds it, so the second process says who that is.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from moleflow.errors import MoleflowError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; the folder is then unguarded
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


def _holder(path: Path) -> str:
    """Who holds the lock at ``path``, as its file says (pid, host, command, since when)."""
    try:
        info = json.loads(path.read_text())
        return (
            f"process {info['pid']} on {info['host']} ({info['command']}, since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['since']))})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def folder_lock(folder: str | os.PathLike[str], what: str) -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if needed) for the ``with`` block.

    Args:
        folder: the output folder to guard.
        what: how the user named it, for the message (``--out``, ``run folder``).

    Raises:
        MoleflowError: another live process holds the lock (one line naming it and the folder).
    """
    path = Path(folder) / LOCK_NAME
    if fcntl is None:  # pragma: no cover
        yield path
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # a folder (or anything but a file) where the lock file goes
        raise MoleflowError(
            f"{what} {folder}: cannot take its lock {path} ({exc.strerror or exc}); remove that entry if it is not "
            "a lock file"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MoleflowError(
                f"{what} {folder} is in use by {_holder(path)}; wait for it to finish or choose another folder"
            ) from None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.time(),
            "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))[:200],
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only its holder goes unnamed
            pass
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
