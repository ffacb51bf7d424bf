"""CI cannot pass while a service test silently skips (MOLEFLOW_REQUIRE_SERVICES=1, set by .ci/run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("required, expected", [("1", "1 failed, 1 skipped"), ("", "2 skipped")])
def test_a_skipped_service_test_fails_only_when_services_are_required(
    tmp_path: Path, required: str, expected: str
) -> None:
    (tmp_path / "test_probe.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.service\n"
        "def test_needs_a_service():\n    pytest.skip('no such service here')\n\n"
        "def test_skips_for_another_reason():\n    pytest.skip('no GPU')\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "MOLEFLOW_REQUIRE_SERVICES": required,
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "service_skips",
            "-p",
            "no:cacheprovider",
            "-q",
            "-o",
            "markers=service: test",
            str(tmp_path / "test_probe.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert expected in result.stdout, result.stdout[-2000:]
    if required:
        assert (
            "MOLEFLOW_REQUIRE_SERVICES=1 requires it to run: " in result.stdout
            and "no such service here" in result.stdout
        )
