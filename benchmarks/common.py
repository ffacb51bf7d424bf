"""What every benchmark shares: timing, the environment, result tables.

Timings are medians of repeated calls after warm-up, compared as ratios against a
baseline measured in the same process; they are never asserts in tests.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import torch

SCALES = ("smoke", "full")


@dataclass
class Result:
    """One benchmark's table: ``rows`` of ``columns``, the command that made it, and what it means."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    command: str = ""

    def add(self, *values: Any) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"{self.name}: {len(values)} values for {len(self.columns)} columns")
        self.rows.append(list(values))

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


def median_seconds(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_seconds(fns: dict[str, Callable[[], Any]], repeat: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Wall times of each ``fns[name]()`` measured in rounds (one call of each per round, after ``warmup`` rounds).

    Ratios taken per round (``t_a[r] / t_b[r]``) compare calls made seconds apart, so a
    slow phase of a shared machine affects both sides of a ratio alike.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of ``a[r] / b[r]`` (see :func:`interleaved_seconds`)."""
    return statistics.median(x / y for x, y in zip(a, b))


def fmt(value: Any) -> str:
    """Cell text: 3 significant digits for floats, thousands separators for ints."""
    if isinstance(value, bool) or value is None:
        return "--" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "--"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def markdown(result: Result) -> str:
    lines = [f"## {result.title}", "", f"Command: `{result.command}`", ""]
    lines += ["| " + " | ".join(result.columns) + " |", "|" + "---|" * len(result.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in result.rows]
    if result.notes:
        lines += [""] + result.notes
    return "\n".join(lines) + "\n"


def environment() -> dict[str, str]:
    """Machine, library versions and date, for the head of RESULTS.md."""
    versions = {}
    for package in ("torch", "timm", "FrEIA", "numpy", "snakemake", "mlflow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "date (UTC)": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or 'cpu'}",
        "python": platform.python_version(),
        "GPU": device,
        **versions,
    }


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def synced(fn: Callable[[], Any]) -> Callable[[], None]:
    """``fn`` followed by :func:`sync`: what a timing of GPU work must wait for."""

    def call() -> None:
        fn()
        sync()

    return call


def _conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    _groups,
    output_mask,
    out_shape=None,
    **kwargs,
) -> int:
    """A convolution's backward: each gradient asked for costs the forward's multiply-adds.

    torch's own formula counts the weight gradient of a grouped convolution as if it were
    dense (``C_out x C_in`` instead of ``C_out x C_in / groups``), which makes a depthwise
    convolution's backward hundreds of times its real cost.
    """
    from torch.utils.flop_counter import conv_flop_count

    return sum(bool(m) for m in output_mask[:2]) * conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)


def count_flops(fn: Callable[[], Any]) -> int:
    """Matrix-product and convolution FLOPs of one call of ``fn`` (``FlopCounterMode``; a grouped
    convolution's backward counted per group, see :func:`_conv_backward_flop`)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop}
    ) as counter:
        fn()
    return int(counter.get_total_flops())


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread inside the block (as each workflow job trains: ``threads: 1``), the caller's count after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def self_cpu_shares(fn: Callable[[], None], steps: int) -> dict[str, float]:
    """Each operation's share of the self CPU time over ``steps`` calls of ``fn`` (after one warm-up call),
    largest first; operations without self time left out (``torch.profiler``)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    events = sorted(
        (e for e in prof.key_averages() if e.self_cpu_time_total > 0), key=lambda e: e.self_cpu_time_total, reverse=True
    )
    total = sum(e.self_cpu_time_total for e in events)
    return {e.key: e.self_cpu_time_total / total for e in events}
