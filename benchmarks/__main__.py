"""``python -m benchmarks [--only NAME ...] [--scale full|smoke] [--out FILE]``.

Runs every benchmark (at ``full`` scale about 5 minutes on 2 CPU cores; on a GPU the
same script measures the GPU: every benchmark uses CUDA when present) and writes
``benchmarks/RESULTS.md``: the machine, library versions, date, and one table per
benchmark with the command that produced it. With ``--only`` the tables go to stdout
unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import BENCHMARKS
from benchmarks.common import SCALES, environment, markdown
from moleflow.io import write_text_atomic

DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run these benchmarks only")
    parser.add_argument("--scale", choices=SCALES, default="full", help="smoke = smallest sizes (what the tests run)")
    parser.add_argument("--out", help=f"Markdown file to write (default {DEFAULT_OUT} when running all)")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    out = Path(args.out) if args.out else (None if args.only else DEFAULT_OUT)
    sections, started = [], time.perf_counter()
    for name in names:
        start = time.perf_counter()
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        result = BENCHMARKS[name](args.scale)
        sections.append(markdown(result))
        print(f"[benchmarks] {name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    env = environment()
    head = [
        "# Benchmarks",
        "",
        "Produced by `python -m benchmarks" + (f" --scale {args.scale}" if args.scale != "full" else "") + "`"
        f" in {time.perf_counter() - started:.0f} s. Every ratio compares runs in the same process; nothing here is "
        "a test assert.",
        "",
        "| | |",
        "|---|---|",
    ] + [f"| {k} | {v} |" for k, v in env.items()]
    from benchmarks.breakdown import records

    text = "\n".join(head) + "\n\n" + "\n".join(sections + ([records()] if out is not None and records() else []))
    if out is None:
        print(text)
    else:
        write_text_atomic(out, text)
        print(f"[benchmarks] wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
