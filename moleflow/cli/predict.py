"""``moleflow predict``: new images through a trained run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moleflow.cli.common import positive_int, set_threads


def _cmd_predict(args: argparse.Namespace) -> int:
    from moleflow.continual.predict import predict_images

    set_threads(args)
    done = predict_images(
        args.run,
        args.images,
        args.out,
        args.task,
        args.threshold,
        args.normal,
        args.quantile,
        args.allow_training_normal,
        args.match_training,
    )
    for note in done["notes"]:
        print(note, file=sys.stderr)
    if done["decided"] is None:
        decided = ""
    elif done["decided"] == 0:
        decided = "; no image was routed to a task with a threshold: no decision"
    else:
        decided = f"; {done['anomalous']} of {done['decided']} decided images above their threshold ({done['how']})"
    out = Path(args.out)
    print(
        f"scored {done['images']} images ({done['backbone_images']} backbone passes) -> {out / 'scores.csv'}, "
        f"{out / 'maps'}/, {out / 'overlays'}/{decided}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """The ``predict`` subcommand."""
    pred = sub.add_parser(
        "predict", help="score new images with a trained run: routed task, score, anomaly map (and a decision)"
    )
    pred.add_argument("--run", required=True, help="a run directory (its config.yaml and checkpoints are read)")
    pred.add_argument(
        "images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files, or folders of images (not recursive)"
    )
    pred.add_argument(
        "--out",
        required=True,
        help="writes scores.csv, maps/<n>_<stem>.png, maps/scale.json, "
        "overlays/<n>_<stem>.png, threshold.json (replacing an earlier predict's)",
    )
    pred.add_argument("--task", help="score every image with this task (category name or index) instead of routing it")
    pred.add_argument("--threshold", type=float, help="decide 'anomalous' where the image score exceeds this value")
    pred.add_argument(
        "--normal",
        metavar="FOLDER",
        help="held-out normal images: per task, the threshold is the "
        "--quantile of their image scores (never anomalous images, never the run's test set)",
    )
    pred.add_argument(
        "--quantile", type=float, default=0.99, help="quantile of the normal images' scores (default 0.99)"
    )
    pred.add_argument(
        "--allow-training-normal",
        action="store_true",
        help="accept --normal images that are the run's own training images (refused by default: their scores are low by construction)",
    )
    pred.add_argument(
        "--match-training",
        action="store_true",
        help="accept images of another size or mode than the run's training images (another camera): resize, crop "
        "and convert them to RGB as the training images were (refused by default; the output says how many)",
    )
    pred.add_argument("--threads", type=positive_int, help="torch threads (default: torch's, one per core)")
    pred.set_defaults(func=_cmd_predict)
