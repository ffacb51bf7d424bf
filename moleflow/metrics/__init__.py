"""Metrics of the paper (I-AUROC, P-AUROC, P-AP), AUPRO, and continual-learning summaries."""

from moleflow.metrics.continual import (
    backward_transfer,
    forgetting_diag,
    forgetting_max,
    forgetting_per_task,
    routing_accuracy,
    routing_confusion,
)
from moleflow.metrics.pro import aupro, pro_curve
from moleflow.metrics.ranking import image_auroc, pixel_ap, pixel_auroc

__all__ = [
    "aupro",
    "backward_transfer",
    "forgetting_diag",
    "forgetting_max",
    "forgetting_per_task",
    "image_auroc",
    "pixel_ap",
    "pixel_auroc",
    "pro_curve",
    "routing_accuracy",
    "routing_confusion",
]
