"""Benchmarks of the harness and the model; ``python -m benchmarks`` writes ``benchmarks/RESULTS.md``."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks import cpu_step, feature_cache, flops, flow_step, growth, inference, params, step_parts, workflow
from benchmarks.common import Result

BENCHMARKS: dict[str, Callable[[str], Result]] = {
    "feature_cache": feature_cache.run,
    "flow_step": flow_step.run,
    "cpu_step": cpu_step.run,
    "step_parts": step_parts.run,
    "inference": inference.run,
    "params": params.run,
    "workflow": workflow.run,
    "growth": growth.run,
    "flops": flops.run,
}

__all__ = ["BENCHMARKS", "Result"]
