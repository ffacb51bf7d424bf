"""User-facing errors.

Every problem caused by the user's input (a missing file, a bad config key, a
corrupt image) is raised as a :class:`MoleflowError`. The command line prints its
message as one line and exits with status 2; it never shows a traceback for them.
"""

from __future__ import annotations

import errno


class MoleflowError(Exception):
    """An error whose message alone tells the user what is wrong and where."""


class DatasetError(MoleflowError):
    """A dataset copy is missing, incomplete or inconsistent."""


class ConfigError(MoleflowError):
    """A configuration key or value is invalid."""


class WeightsError(MoleflowError):
    """Pretrained weights were requested but are not available offline."""


class DiskFullError(MoleflowError, OSError):
    """A write failed for want of space (``ENOSPC``, ``EDQUOT``): the message names the path; nothing half-written stays."""


#: The ``errno`` values of a full device or an exhausted quota.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException, path: object) -> DiskFullError | None:
    """``exc`` as a :class:`DiskFullError` naming ``path`` when it is a full disk's error, else ``None``."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return DiskFullError(
            f"no space left on the device of {path} (writing it failed; nothing half-written was kept)"
        )
    return None
