"""MoLE-Flow research harness."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("moleflow")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0.1.0"
