"""Shared fixtures: small dataset trees in each real layout, built by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from moleflow.data.synth.standin import make_mvtec, make_visa, save  # noqa: F401  (re-exported for the tests)

pytest_plugins = ["service_skips"]  # CI: a skipped service test fails (MOLEFLOW_REQUIRE_SERVICES=1)


@pytest.fixture
def mvtec_root(tmp_path: Path) -> Path:
    return make_mvtec(tmp_path / "mvtec", {"bottle": False, "screw": True})


@pytest.fixture
def visa_root(tmp_path: Path) -> Path:
    return make_visa(tmp_path / "visa", ["candle", "pcb1"])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cap, tile and screw generated at 64 px (8 training, 3 good and 2 per defect test images each), once per module."""
    from tests_helpers import continual_synth

    return continual_synth(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feature cache folder shared by a module's runs."""
    return tmp_path_factory.mktemp("cache")
