"""Evaluation after each task: every seen task, routed and with the true task id (oracle).

Each test image is scored by the adapters of its true task (oracle) and, when the
router sends it elsewhere, also by the routed task's adapters; images go through
in fixed chunks of ``evaluation.batch_size`` in dataset order, so an unchanged
model gives bit-identical scores, and routed results equal oracle results
whenever routing is right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from moleflow.continual.learner import Learner
from moleflow.continual.score_cache import ScoreCache
from moleflow.continual.settings import ScoreSettings
from moleflow.continual.tasks import TaskData, rows_on
from moleflow.metrics import aupro, image_auroc, pixel_ap, pixel_auroc
from moleflow.metrics.continual import METRICS  # re-exported for the run summary


@dataclass
class TaskScores:
    """Scores of one task's test set under one assignment of adapters."""

    image: np.ndarray  # (N,) image scores
    maps: np.ndarray | None  # (N, S, S) float32 anomaly maps; None for a strategy without maps (DNE)
    by_top_k: dict[int, np.ndarray] = field(default_factory=dict)  # k -> (N,) image scores re-aggregated with top-k = k
    patches: np.ndarray | None = None  # (N, H, W) the patch scores the maps and image scores were made from


@torch.no_grad()
def score_batch(
    learner: Learner, task: int, x: torch.Tensor, scoring: ScoreSettings, rescore: tuple[int, ...] = ()
) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
    """Image scores ``(B,)`` and anomaly maps ``(B, S, S)`` of patch maps ``x`` ``(B, H, W, D)`` under task ``task``.

    The third item holds, for each ``k`` in ``rescore``, the image scores of the same patch
    scores aggregated with ``image_top_k = k`` (the model is not run again).
    """
    return aggregate(learner.patch_scores(task, x), scoring, rescore)


def aggregate(
    patch_scores: torch.Tensor, scoring: ScoreSettings, rescore: tuple[int, ...] = ()
) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
    """Image scores ``(B,)``, anomaly maps ``(B, S, S)`` and the re-scored top-k image scores of patch scores
    ``(B, H, W)``: what :func:`score_batch` returns for them."""
    from moleflow.model import anomaly_maps, image_scores

    return (
        image_scores(patch_scores, scoring.image_top_k),
        anomaly_maps(patch_scores, scoring.input_size, scoring.map_sigma, scoring.map_padding),
        {k: image_scores(patch_scores, k) for k in rescore},
    )


@torch.no_grad()
def score_rows(
    learner: Learner,
    task: int,
    patches: np.ndarray,
    rows: np.ndarray,
    scoring: ScoreSettings,
    device: torch.device,
    rescore: tuple[int, ...] = (),
) -> TaskScores:
    """Image scores and anomaly maps of ``patches[rows]`` under task ``task``'s adapters (and ``rescore``'s top-k
    scores), with the patch scores they were made from."""
    size = scoring.input_size
    images: list[np.ndarray] = []
    maps: list[np.ndarray] = []
    cells: list[np.ndarray] = []
    by_k: dict[int, list[np.ndarray]] = {k: [] for k in rescore}
    step = scoring.batch_size
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        x = rows_on(patches[chunk], device)
        patch_scores = learner.patch_scores(task, x)
        image, amap, extra = aggregate(patch_scores, scoring, rescore)
        cells.append(patch_scores.cpu().numpy())
        images.append(image.cpu().numpy())
        maps.append(amap.cpu().numpy().astype(np.float32))
        for k, value in extra.items():
            by_k[k].append(value.cpu().numpy())
    if not images:
        return TaskScores(np.zeros(0), np.zeros((0, size, size), dtype=np.float32))
    return TaskScores(
        np.concatenate(images),
        np.concatenate(maps),
        {k: np.concatenate(v) for k, v in by_k.items()},
        np.concatenate(cells),
    )


def nan_to_num(scores: TaskScores) -> tuple[TaskScores, int]:
    """The authors' evaluate_class: NaN and -inf become 0, +inf becomes 1 in the image scores and the
    (already smoothed) maps; also the re-scored top-k scores. Returns the scores and how many values changed."""

    def fix(values: np.ndarray) -> tuple[np.ndarray, int]:
        bad = int(np.count_nonzero(~np.isfinite(values)))
        return (np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0) if bad else values), bad

    image, count = fix(scores.image)
    maps = None
    if scores.maps is not None:
        maps, bad = fix(scores.maps)
        count += bad
    by_k = {}
    for k, values in scores.by_top_k.items():
        by_k[k], bad = fix(values)
        count += bad
    return TaskScores(image, maps, by_k), count


def metrics_of(labels: np.ndarray, masks: np.ndarray, scores: TaskScores, fpr_limit: float) -> dict[str, float | None]:
    """The four metrics of one task's test set (without maps: the pixel metrics are ``None``, not measured)."""
    if scores.maps is None:
        image = image_auroc(labels, scores.image) if np.all(np.isfinite(scores.image)) else float("nan")
        return {m: image if m == "image_auroc" else None for m in METRICS}
    finite = np.all(np.isfinite(scores.image)) and np.all(np.isfinite(scores.maps))
    if not finite:
        return {m: float("nan") for m in METRICS}
    return {
        "image_auroc": image_auroc(labels, scores.image),
        "pixel_ap": pixel_ap(masks, scores.maps),
        "pixel_auroc": pixel_auroc(masks, scores.maps),
        "aupro": aupro(masks, scores.maps, fpr_limit),
    }


@dataclass
class TaskEvaluation:
    """One seen task after some training step."""

    oracle: dict[str, float | None]
    routed: dict[str, float | None]
    routed_to: np.ndarray  # (N,) task id chosen by the router per test image
    routed_scores: TaskScores
    routed_to_euclidean: np.ndarray  # (N,) task id of the nearest prototype mean (the router ablation)
    image_auroc_by_top_k: dict[int, float]  # oracle image AUROC re-aggregated with each RESCORE_TOP_K
    replaced: int = 0  # non-finite score values replaced (evaluation.nonfinite_scores: nan_to_num), oracle and routed
    oracle_patches: np.ndarray | None = None  # (N, H, W) patch scores under the task's own model, as computed


RESCORE_TOP_K = (1, 3, 5, 10)  # image top-k values re-scored from the same patch scores (no retraining)


def evaluate_task(
    learner: Learner,
    task: int,
    data: TaskData,
    scoring: ScoreSettings,
    device: torch.device,
    cache: ScoreCache | None = None,
) -> TaskEvaluation:
    """Evaluate one seen task, oracle and routed (and the Euclidean router and re-scored top-k beside them).

    ``cache`` (one per run) serves the scores and oracle metrics of a model that did not change since an
    earlier evaluation of the same rows (:class:`ScoreCache`); without it everything is computed.
    """
    if not learner.has_maps:
        return evaluate_images(learner, task, data, scoring.nonfinite_scores)
    cache = ScoreCache() if cache is None else cache
    test = data.test
    labels = np.asarray(test.labels)
    masks = np.asarray(test.masks)
    rows = np.arange(len(labels))

    def scored(serving: int, key: str, chosen: np.ndarray, rescore: tuple[int, ...] = ()) -> TaskScores:
        return cache.scores(
            key,
            task,
            serving,
            chosen,
            rescore,
            lambda: score_rows(learner, serving, test.patches, chosen, scoring, device, rescore),
        )

    own = cache.key(learner, task)  # the model as it is now: one digest per task and evaluation
    raw = scored(task, own, rows, RESCORE_TOP_K)  # shared with the cache: copied before any change
    router_features = torch.from_numpy(np.asarray(test.router))
    routed_to = learner.router(router_features).cpu().numpy()
    assert raw.maps is not None  # a strategy with maps
    routed_maps = raw.maps.copy()
    routed = TaskScores(raw.image.copy(), routed_maps)
    for other in np.unique(routed_to[routed_to != task]):
        wrong = rows[routed_to == other]
        again = scored(int(other), cache.key(learner, int(other)), wrong)
        routed.image[wrong], routed_maps[wrong] = again.image, again.maps
    oracle, replaced = raw, 0
    if scoring.nonfinite_scores == "nan_to_num":
        (oracle, n_oracle), (routed, n_routed) = nan_to_num(raw), nan_to_num(routed)
        replaced = n_oracle + n_routed
    limit = scoring.aupro_fpr_limit

    def oracle_metrics() -> tuple[dict[str, float | None], dict[int, float]]:
        by_top_k = {
            k: image_auroc(labels, v) if np.all(np.isfinite(v)) else float("nan") for k, v in oracle.by_top_k.items()
        }
        return metrics_of(labels, masks, oracle, limit), by_top_k

    metrics, by_top_k = cache.oracle_metrics(own, task, oracle_metrics)
    return TaskEvaluation(
        oracle=dict(metrics),  # every image routed to its own task: the same scores, the same metrics
        routed=dict(metrics) if np.all(routed_to == task) else metrics_of(labels, masks, routed, limit),
        routed_to=routed_to,
        routed_scores=routed,
        routed_to_euclidean=learner.router.nearest_mean(router_features).cpu().numpy(),
        image_auroc_by_top_k=dict(by_top_k),
        replaced=replaced,
        oracle_patches=raw.patches,
    )


@torch.no_grad()
def evaluate_images(learner: Learner, task: int, data: TaskData, nonfinite: str = "diverged") -> TaskEvaluation:
    """:func:`evaluate_task` for a strategy that scores whole images from their router features (DNE): no maps,
    the pixel metrics ``None``, no re-scored top-k."""
    test = data.test
    labels = np.asarray(test.labels)
    features = torch.from_numpy(np.asarray(test.router))
    routed_to = learner.router(features).cpu().numpy()
    oracle = TaskScores(learner.image_scores(task, features).cpu().numpy(), None)
    routed = TaskScores(oracle.image.copy(), None)
    for other in np.unique(routed_to[routed_to != task]):
        wrong = np.flatnonzero(routed_to == other)
        routed.image[wrong] = learner.image_scores(int(other), features[wrong]).cpu().numpy()
    replaced = 0
    if nonfinite == "nan_to_num":
        (oracle, n_oracle), (routed, n_routed) = nan_to_num(oracle), nan_to_num(routed)
        replaced = n_oracle + n_routed
    oracle_metrics = metrics_of(labels, np.zeros(0), oracle, 0.0)
    return TaskEvaluation(
        oracle=oracle_metrics,
        routed=dict(oracle_metrics)
        if np.array_equal(routed.image, oracle.image)
        else metrics_of(labels, np.zeros(0), routed, 0.0),
        routed_to=routed_to,
        routed_scores=routed,
        routed_to_euclidean=learner.router.nearest_mean(features).cpu().numpy(),
        image_auroc_by_top_k={},
        replaced=replaced,
    )
