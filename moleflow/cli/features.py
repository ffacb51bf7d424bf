"""``moleflow features extract``: the feature cache."""

from __future__ import annotations

import argparse
import json

from moleflow.cli.common import add_config_args, positive_int, resolve, set_threads
from moleflow.data.layouts import LAYOUTS
from moleflow.errors import MoleflowError


def _also_features(text: str | None) -> list[dict]:
    """``--also-features``: a JSON list of whole ``features`` blocks to extract as well."""
    if not text:
        return []
    try:
        blocks = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MoleflowError(f"--also-features is not valid JSON ({exc})") from None
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise MoleflowError("--also-features must be a JSON list of features blocks [{...}, ...]")
    return blocks


def _cmd_features_extract(args: argparse.Namespace) -> int:
    from moleflow.config import load_config
    from moleflow.data.layouts import list_categories, no_categories
    from moleflow.features.extract import FeatureStore
    from moleflow.io import ensure_writable_dir

    also = _also_features(args.also_features)
    config = resolve(args)
    ds = config["dataset"]
    categories = args.categories or ds["categories"] or list_categories(ds["kind"], ds["root"])
    if not categories:
        raise no_categories(ds["kind"], ds["root"])
    ensure_writable_dir(config["features"]["cache_dir"], "features.cache_dir")
    set_threads(args)
    stores = [FeatureStore(config, progress=not args.quiet)]
    for settings in also:  # the other resolutions the workflow's runs read
        stores.append(
            FeatureStore(load_config(None, [], base={**config, "features": settings}), progress=not args.quiet)
        )
    records = []
    for store in stores:
        for category in categories:
            for split in args.splits:
                features = store.get(category, split)
                records.append(
                    {
                        "category": category,
                        "split": split,
                        "path": str(features.path),
                        "images": int(features.patches.shape[0]),
                    }
                )
                n = features.patches.shape[0]
                how = "cache hit" if store.last_hit else "extracted"
                rate = features.meta["images_per_second"]
                print(
                    f"{category}/{split}: {n} images, patches {tuple(features.patches.shape[1:])} {features.patches.dtype}, "
                    f"{how} ({rate:.1f} img/s at extraction) -> {features.path}"
                )
    stats = {key: sum(store.stats[key] for store in stores) for key in stores[0].stats}
    print(
        f"cache: {stats['hits']} hits, {stats['misses']} misses, "
        f"{stats['images_extracted']} images extracted in {stats['extract_seconds']:.1f} s"
    )
    if args.record:
        from moleflow.io import write_json_atomic

        write_json_atomic(args.record, {"entries": records, "stats": stats})
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """The ``features`` subcommands."""
    features = sub.add_parser("features", help="backbone features").add_subparsers(
        dest="features_command", required=True
    )
    extract = features.add_parser("extract", help="extract and cache patch embeddings")
    add_config_args(extract)
    extract.add_argument("--dataset", choices=LAYOUTS, help="shortcut for --set dataset.kind=...")
    extract.add_argument("--root", help="shortcut for --set dataset.root=...")
    extract.add_argument("--categories", nargs="+", help="default: dataset.categories, else every category")
    extract.add_argument(
        "--splits",
        nargs="+",
        default=["train", "test"],
        choices=["train", "test"],
        help="which splits to extract (default both)",
    )
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.add_argument(
        "--threads",
        type=positive_int,
        help="torch threads (default: torch's, one per core); the workflow passes the job's Snakemake threads",
    )
    extract.add_argument("--record", help="write a JSON record of the cache entries here (the workflow's output)")
    extract.add_argument(
        "--also-features",
        metavar="JSON",
        help="a JSON list of other whole `features` blocks to extract too (the workflow passes the other resolutions its runs read)",
    )
    extract.set_defaults(func=_cmd_features_extract)
