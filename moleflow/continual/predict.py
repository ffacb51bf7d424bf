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
threshold, and their images no decision.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from moleflow.config import Config, load_saved_config
from moleflow.continual.checkpoint import restore
from moleflow.continual.evaluate import score_batch
from moleflow.continual.learner import Learner
from moleflow.continual.settings import ScoreSettings
from moleflow.data.layouts import IMAGE_EXTENSIONS, images_in, load_category
from moleflow.data.transforms import load_image
from moleflow.device import resolve_device
from moleflow.errors import DatasetError, MoleflowError
from moleflow.features.backbone import normalization
from moleflow.features.extract import FeatureExtractor
from moleflow.io import atomic_path, write_json_atomic, write_text_atomic


@dataclass
class TrainedRun:
    """A run directory's configuration, its restored learner and the categories of its finished tasks."""

    config: Config
    learner: Learner
    categories: list[str]
    device: torch.device


def load_run(run_dir: str | Path) -> TrainedRun:
    """Restore the learner as it was after the run's last finished task."""
    run = Path(run_dir)
    progress = run / "checkpoints" / "progress.json"
    if not (run / "config.yaml").is_file() or not progress.is_file():
        raise MoleflowError(f"--run: {run} holds no finished task (expected config.yaml and checkpoints/progress.json)")
    config = load_saved_config(run / "config.yaml")
    state = json.loads(progress.read_text())
    categories = [t["category"] for t in state["tasks"][: state["completed"]]]
    if not categories:
        raise MoleflowError(f"--run: {run} holds no finished task")
    device = resolve_device(config["device"])
    learner = Learner(config, int(config["features"]["embed_dim"]))
    for _ in categories:
        learner.add_task(None)  # the prototypes come from the checkpoint
    restore(learner, run / "checkpoints", len(categories))
    return TrainedRun(config, learner.to(device).eval(), categories, device)


def list_images(inputs: list[str]) -> list[Path]:
    """The image files named, and those directly inside the folders named, in order (folders sorted)."""
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = images_in(path)
            if not found:
                raise DatasetError(f"no image ({'/'.join(IMAGE_EXTENSIONS)}) in {path}")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise DatasetError(f"no such image or folder: {path}")
    return out


def training_formats(config: Config, categories: list[str]) -> dict[str, tuple[set[tuple[int, int]], set[str]]]:
    """Per category, the ``(sizes, modes)`` of its training images, when the run's dataset is still where it was."""
    ds = config["dataset"]
    out: dict[str, tuple[set[tuple[int, int]], set[str]]] = {}
    for category in categories:
        try:
            samples = load_category(ds["kind"], Path(ds["root"]), category).train
        except MoleflowError:
            continue
        sizes, modes = set(), set()
        for sample in samples[:8]:
            try:
                with Image.open(sample.image) as img:
                    sizes.add(img.size)
                    modes.add(img.mode)
            except (OSError, SyntaxError, ValueError):  # the run's copy changed since; check against what reads
                continue
        if sizes:
            out[category] = (sizes, modes)
    return out


def check_images(paths: list[Path], formats: dict[str, tuple[set[tuple[int, int]], set[str]]]) -> None:
    """Refuse, in one line, an image whose size or mode no training image of the run had."""
    if not formats:
        return
    sizes = set().union(*(s for s, _ in formats.values()))
    modes = set().union(*(m for _, m in formats.values()))
    for path in paths:
        try:
            with Image.open(path) as img:
                size, mode = img.size, img.mode
        except (OSError, SyntaxError, ValueError) as exc:
            raise DatasetError(f"unreadable image: {path} ({exc})") from None
        if size not in sizes:
            raise DatasetError(f"{path}: size {size[0]}x{size[1]}, but the run trained on "
                               f"{', '.join(f'{w}x{h}' for w, h in sorted(sizes))} images")
        if mode not in modes:
            raise DatasetError(f"{path}: mode {mode}, but the run trained on {', '.join(sorted(modes))} images")


@torch.no_grad()
def features_of(paths: list[Path], config: Config, extractor: FeatureExtractor) -> tuple[np.ndarray, np.ndarray]:
    """``(N, H, W, D)`` float32 patches (rounded through ``features.cache_dtype``, as the cache stores them) and ``(N, D)`` router features."""
    feats = config["features"]
    norm = normalization(feats["backbone"])
    patches, routers = [], []
    for start in range(0, len(paths), feats["batch_size"]):
        batch = [load_image(p, feats["resize"], feats["input_size"], *norm, feats["resize_mode"])
                 for p in paths[start : start + feats["batch_size"]]]
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


def score(learner: Learner, patches: np.ndarray, tasks: np.ndarray, scoring: ScoreSettings,
          device: torch.device) -> tuple[np.ndarray, np.ndarray]:
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


def write_map_png(path: Path, amap: np.ndarray, low: float, high: float) -> None:
    """An anomaly map as an 8-bit grayscale PNG, ``low -> 0`` and ``high -> 255`` (the same scale for every map)."""
    scaled = np.clip((amap - low) / max(high - low, 1e-12), 0.0, 1.0)
    buffer = io.BytesIO()
    Image.fromarray(np.round(255 * scaled).astype(np.uint8), mode="L").save(buffer, format="PNG")
    with atomic_path(path, suffix=".png") as tmp:
        tmp.write_bytes(buffer.getvalue())


def write_outputs(out: Path, paths: list[Path], categories: list[str], tasks: np.ndarray, confidence: np.ndarray | None,
                  images: np.ndarray, maps: np.ndarray, thresholds: dict[int, float] | None, how: str) -> None:
    """``OUT/scores.csv``, ``OUT/maps/<n>_<stem>.png`` and ``OUT/maps/scale.json``."""
    low, high = float(maps.min()), float(maps.max())
    for k, (path, amap) in enumerate(zip(paths, maps)):
        write_map_png(out / "maps" / f"{k:04d}_{path.stem}.png", amap, low, high)
    write_json_atomic(out / "maps" / "scale.json", {"black": low, "white": high, "unit": "patch negative log-likelihood "
                      "(or the kNN distance), upsampled and smoothed as in evaluation"})
    fields = ["image", "task", "category", "routing_confidence", "score", "threshold", "anomalous"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for k, path in enumerate(paths):
        task = int(tasks[k])
        limit = None if thresholds is None else thresholds.get(task)
        writer.writerow({"image": str(path), "task": task, "category": categories[task],
                         "routing_confidence": "" if confidence is None else f"{confidence[k]:.6f}",
                         "score": f"{images[k]:.6f}", "threshold": "" if limit is None else f"{limit:.6f}",
                         "anomalous": "" if limit is None else str(bool(images[k] > limit)).lower()})
    write_text_atomic(out / "scores.csv", buffer.getvalue())
    write_json_atomic(out / "threshold.json", {"how": how, "per_task": {categories[t]: v for t, v in (thresholds or {}).items()}})


def task_index(categories: list[str], task: str) -> int:
    """``--task``: a category name of the run, or a task index."""
    if task in categories:
        return categories.index(task)
    if task.isdigit() and int(task) < len(categories):
        return int(task)
    raise MoleflowError(f"--task {task}: the run's tasks are {', '.join(f'{i} {c}' for i, c in enumerate(categories))}")


def predict_images(run_dir: str | Path, inputs: list[str], out: str | Path, task: str | None = None,
                   threshold: float | None = None, normal: str | None = None, quantile: float = 0.99) -> dict:
    """Everything ``moleflow predict`` does; returns a short record of it."""
    if threshold is not None and normal:
        raise MoleflowError("give --threshold or --normal, not both")
    if not 0.0 < quantile <= 1.0:
        raise MoleflowError(f"--quantile must lie in (0, 1], got {quantile}")
    trained = load_run(run_dir)
    config, learner = trained.config, trained.learner
    paths = list_images(inputs)
    normal_paths = list_images([normal]) if normal else []
    check_images(paths + normal_paths, training_formats(config, trained.categories))
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
        how = (f"per task, the {quantile} quantile of the image scores of the {len(normal_paths)} normal images in {normal} "
               "routed to it (tasks no normal image was routed to have no threshold)")
    out = Path(out)
    write_outputs(out, paths, trained.categories, tasks, confidence, images, maps, thresholds, how)
    return {"images": len(paths), "backbone_images": extractor.images_passed, "how": how,
            "anomalous": None if thresholds is None else int(sum(images[k] > thresholds.get(int(t), np.inf)
                                                                 for k, t in enumerate(tasks)))}
