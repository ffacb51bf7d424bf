"""``moleflow synth`` and ``moleflow data check|baseline``: the generated dataset and dataset copies."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from moleflow.data.layouts import LAYOUTS


def _cmd_synth(args: argparse.Namespace) -> int:
    from moleflow.data.synth import SynthCounts, generate

    counts = SynthCounts(train=args.train, test_good=args.test_good, test_per_defect=args.test_defect)
    start = time.perf_counter()
    summary = generate(args.out, seed=args.seed, size=args.size, categories=args.categories, counts=counts)
    images = sum(sum(c.values()) for c in summary.values())
    print(f"wrote {images} images in {len(summary)} categories to {args.out} ({time.perf_counter() - start:.1f} s)")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from moleflow.data.check import check_dataset, format_counts

    counts = check_dataset(args.dataset, args.root, args.categories)
    print(json.dumps(counts, indent=2) if args.json else format_counts(counts))
    return 0


def _cmd_data_baseline(args: argparse.Namespace) -> int:
    from moleflow.data.layouts import list_categories, no_categories
    from moleflow.data.synth.difficulty import pixel_zscore_auroc

    categories = args.categories or list_categories(args.dataset, args.root)
    if not categories:
        raise no_categories(args.dataset, args.root)
    values = {c: pixel_zscore_auroc(args.dataset, args.root, c) for c in categories}
    for category, value in values.items():
        print(f"{category}: per-pixel z-score detector image AUROC {value:.3f}")
    print(f"mean: {np.mean(list(values.values())):.3f}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """The ``synth`` and ``data`` subcommands."""
    synth = sub.add_parser("synth", help="write the generated default dataset in the MVTec AD layout")
    synth.add_argument("out", help="output folder")
    synth.add_argument(
        "--seed",
        type=int,
        default=0,
        help="generator seed: every image and defect follows from it (default 0; the embedded default's test data; tune on another seed)",
    )
    synth.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    synth.add_argument("--categories", nargs="+", help="subset of: fabric wood tile cap screw pcb (default all six)")
    synth.add_argument("--train", type=int, default=40, help="normal training images per category (default 40)")
    synth.add_argument("--test-good", type=int, default=10, help="normal test images per category (default 10)")
    synth.add_argument("--test-defect", type=int, default=6, help="test images per defect type (default 6)")
    synth.set_defaults(func=_cmd_synth)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="validate a dataset copy and count its images")
    check.add_argument(
        "--dataset",
        required=True,
        choices=LAYOUTS,
        help="layout: " + "; ".join(f"{name} ({lay.description})" for name, lay in LAYOUTS.items()),
    )
    check.add_argument("--root", required=True, help="folder holding the dataset copy")
    check.add_argument("--categories", nargs="+", help="categories to check (default every category found)")
    check.add_argument("--json", action="store_true", help="print one JSON object keyed by category")
    check.set_defaults(func=_cmd_data_check)
    baseline = data.add_parser(
        "baseline", help="image AUROC of a per-pixel z-score detector (is the dataset too easy?)"
    )
    baseline.add_argument("--dataset", required=True, choices=LAYOUTS, help="layout (as data check)")
    baseline.add_argument("--root", required=True, help="folder holding the dataset copy")
    baseline.add_argument("--categories", nargs="+", help="categories (default every category found)")
    baseline.set_defaults(func=_cmd_data_baseline)
