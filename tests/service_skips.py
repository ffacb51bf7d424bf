"""A pytest plugin: with ``MOLEFLOW_REQUIRE_SERVICES=1`` (set by ``.ci/run``), a skipped test marked
``service`` fails, so CI cannot pass while the PostgreSQL, LaTeX or SLURM tests silently skip
because a Debian package failed to install."""

from __future__ import annotations

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and item.get_closest_marker("service") and os.environ.get("MOLEFLOW_REQUIRE_SERVICES") == "1":
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but MOLEFLOW_REQUIRE_SERVICES=1 requires it to run: {reason}"
