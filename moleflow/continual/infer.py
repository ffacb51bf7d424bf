"""Task-agnostic inference: route every image, then score each routed group in one batched pass.

What a deployed MoLE-Flow does with a batch of unlabelled test images: the Mahalanobis
router picks a task for each image on its own; the images routed to the same task go
through that task's adapters together (one forward pass per task present in the batch);
the results are put back in the batch's order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from moleflow.continual.evaluate import score_batch
from moleflow.continual.learner import Learner
from moleflow.continual.settings import ScoreSettings


@dataclass
class Prediction:
    """Per image of the batch: routed task, image score and anomaly map."""

    task: np.ndarray  # (B,) int routed task ids
    image: np.ndarray  # (B,) image scores
    maps: np.ndarray  # (B, S, S) float32 anomaly maps


@torch.no_grad()
def predict(
    learner: Learner, patches: torch.Tensor, router_features: torch.Tensor, scoring: ScoreSettings
) -> Prediction:
    """Score a batch without task labels.

    Args:
        patches: ``(B, H, W, D)`` patch features on the learner's device.
        router_features: ``(B, D_r)`` router features (the images' pooled backbone features).
    """
    size = scoring.input_size
    tasks = learner.router(router_features)
    batch = patches.shape[0]
    images = torch.empty(batch, dtype=torch.float32, device=patches.device)
    maps = torch.empty(batch, size, size, dtype=torch.float32, device=patches.device)
    for task in torch.unique(tasks).tolist():
        rows = torch.nonzero(tasks == task).flatten()
        image, amap, _ = score_batch(learner, int(task), patches[rows], scoring)
        images[rows], maps[rows] = image.float(), amap.float()
    return Prediction(tasks.cpu().numpy(), images.cpu().numpy(), maps.cpu().numpy())
