"""Score new images with a trained run: route each image, score it, optionally decide.

``moleflow predict --run RUN_DIR IMAGES... --out DIR`` uses what the run directory
holds: its resolved configuration (``config.yaml``) and its committed checkpoints
(every finished task's adapters and router prototype). Each image goes through the
backbone once; its patch embedding is rounded to the cache's precision (features.cache_dtype) as the cache stores
it, so an image the run evaluated gets the score the run's own evaluation gave it.

Routing confidence: with ``d1 <= d2`` the squared Mahalanobis distances of the image to
its nearest and second-nearest task prototypes, ``1 - d1 / d2``: 0 when two tasks are
equally near, towards 1 when one task is much nearer (1 with a single task).

A decision needs a threshold, which is never taken from anomalous images: either a
number (``--threshold``), or per task the ``--quantile`` of the image scores of normal
images the user supplies (``--normal DIR``, routed like the others; held-out normal
images, not the run's test set). Tasks that no normal image was routed to get no
threshold, and their images no decision. Normal images that are the run's own training
images (same bytes) are refused: their scores are low by construction, so their
quantile flags normal images (``allow_training_normal`` proceeds with a note).

The run folder is checked against itself first (:mod:`moleflow.continual.runfolder`).
Every output is written into a temporary folder beside ``--out`` and moved into place
at the end, so a failure (a full disk) leaves the previous outputs as they were, and a
rerun with fewer images leaves no map of the earlier run behind.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from moleflow.config import Config
from moleflow.continual.evaluate import score_batch
from moleflow.continual.learner import Learner
from moleflow.continual.overlays import grey_png, overlay_png
from moleflow.continual.predict_inputs import (
    check_images,
    list_images,
    refuse_training_normal,
    training_formats,
    training_images,
)
from moleflow.continual.runfolder import TrainedRun, load_run
from moleflow.continual.settings import ScoreSettings
from moleflow.data.transforms import load_display_image, load_image
from moleflow.errors import MoleflowError, disk_full
from moleflow.features.backbone import normalization
from moleflow.features.extract import FeatureExtractor
from moleflow.io import ensure_writable_dir
from moleflow.lock import folder_lock

__all__ = ["TrainedRun", "load_run", "predict_images"]


@torch.no_grad()
def features_of(paths: list[Path], config: Config, extractor: FeatureExtractor) -> tuple[np.ndarray, np.ndarray]:
    """``(N, H, W, D)`` float32 patches (rounded through ``features.cache_dtype``, as the cache stores them) and ``(N, D)`` router features."""
    feats = config["features"]
    norm = normalization(feats["backbone"])
    patches, routers = [], []
    for start in range(0, len(paths), feats["batch_size"]):
        batch = [
            load_image(p, feats["resize"], feats["input_size"], *norm, feats["resize_mode"])
            for p in paths[start : start + feats["batch_size"]]
        ]
        p, r = extractor(torch.from_numpy(np.stack(batch)))
        patches.append(p.numpy().astype(feats["cache_dtype"]).astype(np.float32))
        routers.append(r.numpy().astype(np.float32))
    return np.concatenate(patches), np.concatenate(routers)


def route(learner: Learner, router: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Routed task ids ``(N,)`` and confidences ``(N,)`` (``1 - d1 / d2``; 1 with one task)."""
    distances = learner.router.distances(torch.from_numpy(router)).cpu().numpy()
    tasks = distances.argmin(axis=1)
    if distances.shape[1] < 2:
        return tasks, np.ones(len(tasks))
    nearest = np.sort(distances, axis=1)
    return tasks, 1.0 - nearest[:, 0] / np.maximum(nearest[:, 1], 1e-300)


def score(
    learner: Learner, patches: np.ndarray, tasks: np.ndarray, scoring: ScoreSettings, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Image scores ``(N,)`` and anomaly maps ``(N, S, S)``: each task's images in chunks of ``evaluation.batch_size``."""
    n, size = len(patches), scoring.input_size
    images, maps = np.zeros(n), np.zeros((n, size, size), dtype=np.float32)
    for task in np.unique(tasks):
        rows = np.flatnonzero(tasks == task)
        for start in range(0, len(rows), scoring.batch_size):
            chunk = rows[start : start + scoring.batch_size]
            image, amap, _ = score_batch(learner, int(task), torch.from_numpy(patches[chunk]).to(device), scoring)
            images[chunk], maps[chunk] = image.cpu().numpy(), amap.cpu().numpy()
    return images, maps


def thresholds_from_normal(tasks: np.ndarray, images: np.ndarray, quantile: float) -> dict[int, float]:
    """Per task, the ``quantile`` of the image scores of the normal images routed to it."""
    return {int(t): float(np.quantile(images[tasks == t], quantile)) for t in np.unique(tasks)}


def self_flagged(
    tasks: np.ndarray, images: np.ndarray, thresholds: dict[int, float], quantile: float, categories: list[str]
) -> list[str]:
    """A note per task where more of the normal images score above the threshold drawn from them than the
    quantile's share ``(1 - quantile) n`` (rounded down): with few images the quantile interpolates between their
    scores, so the highest is flagged anomalous by construction (two images at 0.99: one of two)."""
    notes = []
    for t, threshold in thresholds.items():
        own = images[tasks == t]
        above = int((own > threshold).sum())
        if above > math.floor((1 - quantile) * len(own) + 1e-9):
            need = math.ceil(1 / (1 - quantile) - 1e-9) if quantile < 1 else len(own)
            notes.append(
                f"note: {above} of the {len(own)} --normal images routed to {categories[t]} score above the threshold "
                f"drawn from them (their {quantile} quantile), more than its share of {1 - quantile:.0%}: too few normal "
                f"images for this quantile; give at least {need} per task, or a lower --quantile"
            )
    return notes


def scores_csv(
    paths: list[Path],
    categories: list[str],
    tasks: np.ndarray,
    confidence: np.ndarray | None,
    images: np.ndarray,
    thresholds: dict[int, float] | None,
) -> str:
    """``scores.csv``: one row per image (image, task, category, routing_confidence, score, threshold, anomalous)."""
    fields = ["image", "task", "category", "routing_confidence", "score", "threshold", "anomalous"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for k, path in enumerate(paths):
        task = int(tasks[k])
        limit = None if thresholds is None else thresholds.get(task)
        writer.writerow(
            {
                "image": str(path),
                "task": task,
                "category": categories[task],
                "routing_confidence": "" if confidence is None else f"{confidence[k]:.6f}",
                "score": f"{images[k]:.6f}",
                "threshold": "" if limit is None else f"{limit:.6f}",
                "anomalous": "" if limit is None else str(bool(images[k] > limit)).lower(),
            }
        )
    return buffer.getvalue()


def write_outputs(
    out: Path,
    paths: list[Path],
    categories: list[str],
    tasks: np.ndarray,
    confidence: np.ndarray | None,
    images: np.ndarray,
    maps: np.ndarray,
    thresholds: dict[int, float] | None,
    how: str,
    config: Config,
) -> None:
    """``OUT/scores.csv``, ``OUT/threshold.json``, ``OUT/maps/<n>_<stem>.png`` with ``maps/scale.json`` and
    ``OUT/overlays/<n>_<stem>.png``: written into a temporary folder, then moved into place."""
    feats = config["features"]
    low, high = float(maps.min()), float(maps.max())
    stage = Path(tempfile.mkdtemp(prefix=".predict-", dir=out))
    try:
        (stage / "maps").mkdir()
        (stage / "overlays").mkdir()
        for k, (path, amap) in enumerate(zip(paths, maps)):
            name = f"{k:04d}_{path.stem}.png"
            (stage / "maps" / name).write_bytes(grey_png(amap, low, high))
            limit = None if thresholds is None else thresholds.get(int(tasks[k]))
            verdict = "" if limit is None else (" ANOMALOUS" if images[k] > limit else " normal")
            label = f"{int(tasks[k])} {categories[int(tasks[k])]}  score {images[k]:.2f}{verdict}"
            picture = load_display_image(path, feats["resize"], feats["input_size"], feats["resize_mode"])
            (stage / "overlays" / name).write_bytes(overlay_png(picture, amap, low, high, label, limit))
        (stage / "maps" / "scale.json").write_text(
            json.dumps(
                {
                    "black": low,
                    "white": high,
                    "unit": "patch negative log-likelihood (or the kNN distance), upsampled and "
                    "smoothed as in evaluation; the overlays' colour map spans the same range",
                },
                indent=2,
            )
            + "\n"
        )
        (stage / "scores.csv").write_text(scores_csv(paths, categories, tasks, confidence, images, thresholds))
        (stage / "threshold.json").write_text(
            json.dumps({"how": how, "per_task": {categories[t]: v for t, v in (thresholds or {}).items()}}, indent=2)
            + "\n"
        )
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise disk_full(exc, out) or exc from None
    for name in ("maps", "overlays", "scores.csv", "threshold.json"):  # each rename is atomic; folders replace folders
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(stage / name, target)
    shutil.rmtree(stage, ignore_errors=True)


def task_index(categories: list[str], task: str) -> int:
    """``--task``: a category name of the run, or a task index."""
    if task in categories:
        return categories.index(task)
    if task.isdigit() and int(task) < len(categories):
        return int(task)
    raise MoleflowError(f"--task {task}: the run's tasks are {', '.join(f'{i} {c}' for i, c in enumerate(categories))}")


def _check_arguments(threshold: float | None, normal: str | None, quantile: float) -> None:
    if threshold is not None and normal:
        raise MoleflowError("give --threshold or --normal, not both")
    if threshold is not None and not math.isfinite(threshold):
        raise MoleflowError(f"--threshold must be a finite number, got {threshold}")
    if not 0.0 < quantile <= 1.0:
        raise MoleflowError(f"--quantile must lie in (0, 1], got {quantile}")


def predict_images(
    run_dir: str | Path,
    inputs: list[str],
    out: str | Path,
    task: str | None = None,
    threshold: float | None = None,
    normal: str | None = None,
    quantile: float = 0.99,
    allow_training_normal: bool = False,
    match_training: bool = False,
) -> dict:
    """Everything ``moleflow predict`` does; returns a short record of it (``notes``: lines for the user)."""
    _check_arguments(threshold, normal, quantile)
    created = not Path(out).exists()
    out = ensure_writable_dir(out, "--out")
    with folder_lock(out, "--out"):
        try:
            return _predict(
                run_dir, inputs, out, task, threshold, normal, quantile, allow_training_normal, match_training
            )
        except BaseException:
            if created:  # a refused or failed predict leaves no folder it made
                shutil.rmtree(out, ignore_errors=True)
            raise


def _predict(
    run_dir: str | Path,
    inputs: list[str],
    out: Path,
    task: str | None,
    threshold: float | None,
    normal: str | None,
    quantile: float,
    allow_training_normal: bool,
    match_training: bool,
) -> dict:
    """:func:`predict_images` once ``out`` is locked."""
    trained = load_run(run_dir)
    config, learner, notes = trained.config, trained.learner, list(trained.notes)
    if not learner.has_maps:
        raise MoleflowError(
            f"{run_dir}: a {learner.strategy.name} run scores whole images and makes no anomaly map; "
            "predict serves runs that make maps (every strategy but dne)"
        )
    paths = list_images(inputs)
    normal_paths = list_images([normal]) if normal else []
    train = training_images(config, trained.categories)
    if train is None:
        notes.append(
            f"note: the run's dataset is no longer at {config['dataset']['root']}: the images' size and "
            "mode could not be checked against its training images"
            + (", nor --normal against them" if normal_paths else "")
        )
    else:
        adapted = check_images(paths + normal_paths, training_formats(train), match_training)
        if adapted:
            notes.append(adapted)
        refuse_training_normal(normal_paths, train, allow_training_normal, notes)
    extractor = FeatureExtractor.from_config(config)
    scoring = ScoreSettings.from_config(config)
    fixed = None if task is None else task_index(trained.categories, task)

    def assess(files: list[Path]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        patches, router = features_of(files, config, extractor)
        if fixed is None:
            tasks, confidence = route(learner, router)
        else:
            tasks, confidence = np.full(len(files), fixed), None
        images, maps = score(learner, patches, tasks, scoring, trained.device)
        return tasks, confidence, images, maps

    tasks, confidence, images, maps = assess(paths)
    thresholds, how = None, "no threshold: scores only"
    if threshold is not None:
        thresholds = {t: float(threshold) for t in range(len(trained.categories))}
        how = f"the fixed threshold {threshold} given with --threshold"
    elif normal_paths:
        normal_tasks, _, normal_images, _ = assess(normal_paths)
        thresholds = thresholds_from_normal(normal_tasks, normal_images, quantile)
        notes += self_flagged(normal_tasks, normal_images, thresholds, quantile, trained.categories)
        how = (
            f"per task, the {quantile} quantile of the image scores of the {len(normal_paths)} normal images in {normal} "
            "routed to it (tasks no normal image was routed to have no threshold)"
        )
    write_outputs(out, paths, trained.categories, tasks, confidence, images, maps, thresholds, how, config)
    decided = None if thresholds is None else np.array([int(t) in thresholds for t in tasks])
    if decided is not None and not decided.all():
        left = sorted({trained.categories[int(t)] for t in tasks[~decided]})
        notes.append(
            f"note: {int((~decided).sum())} of {len(paths)} images were routed to a task no --normal image "
            f"was routed to ({', '.join(left)}): no threshold, no decision for them"
        )
    return {
        "images": len(paths),
        "backbone_images": extractor.images_passed,
        "how": how,
        "notes": notes,
        "decided": None if decided is None else int(decided.sum()),
        "anomalous": None
        if thresholds is None
        else int(sum(images[k] > thresholds.get(int(t), np.inf) for k, t in enumerate(tasks))),
    }
