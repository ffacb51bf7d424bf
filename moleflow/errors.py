"""User-facing errors.

Every problem caused by the user's input (a missing file, a bad config key, a
corrupt image) is raised as a :class:`MoleflowError`. The command line prints its
message as one line and exits with status 2; it never shows a traceback for them.
"""

from __future__ import annotations


class MoleflowError(Exception):
    """An error whose message alone tells the user what is wrong and where."""


class DatasetError(MoleflowError):
    """A dataset copy is missing, incomplete or inconsistent."""


class ConfigError(MoleflowError):
    """A configuration key or value is invalid."""


class WeightsError(MoleflowError):
    """Pretrained weights were requested but are not available offline."""
