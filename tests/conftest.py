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
