"""A run's ``summary.json`` read back: what every summary holds, and one line naming a file that is not one.

Light on purpose (no torch): the MLflow mirror and the analysis read summaries without
training anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moleflow.errors import MoleflowError

#: Top-level keys every run summary has (the tables read them all).
SUMMARY_KEYS = ("status", "config", "config_hash", "tasks", "tasks_completed", "accuracy_matrix", "mean", "forgetting")


def read_summary(path: str | Path) -> dict[str, Any]:
    """A run's ``summary.json``; one line naming it when it is truncated, not JSON or not a run summary.

    Raises:
        MoleflowError: the file and what is wrong with it, and what to do (rerun the run into its folder).
    """
    path = Path(path)
    fix = f"rerun that run (its folder resumes) or delete {path.parent}"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MoleflowError(f"{path}: truncated or not JSON ({reason}); {fix}") from None
    if not isinstance(summary, dict) or any(key not in summary for key in SUMMARY_KEYS):
        lacking = [k for k in SUMMARY_KEYS if not isinstance(summary, dict) or k not in summary]
        raise MoleflowError(f"{path}: not a run summary (no {', '.join(lacking)}); {fix}")
    return summary
