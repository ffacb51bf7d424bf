"""Typed settings of training and scoring, built once from a validated run configuration.

Training, evaluation and inference take these instead of the whole configuration, so
what each step reads is visible in its signature (the schema documents every field).
"""

from __future__ import annotations

from dataclasses import dataclass

from moleflow.config import Config
from moleflow.model import TailAwareLoss


@dataclass(frozen=True)
class TrainSettings:
    """How one task is trained (``training.*``, plus the run's seed and the kNN reference's coreset ratio)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    lr_min_ratio: float
    clip_grad_norm: float
    tail_weight: float
    top_k_ratio: float
    logdet_reg: float
    nll_reduction: str
    seed: int
    knn_coreset_ratio: float

    @classmethod
    def from_config(cls, config: Config) -> "TrainSettings":
        tr = config["training"]
        return cls(epochs=tr["epochs"], batch_size=tr["batch_size"], lr=tr["lr"], weight_decay=tr["weight_decay"],
                   warmup_epochs=tr["warmup_epochs"], lr_min_ratio=tr["lr_min_ratio"],
                   clip_grad_norm=tr["clip_grad_norm"], tail_weight=tr["tail_weight"], top_k_ratio=tr["top_k_ratio"],
                   logdet_reg=tr["logdet_reg"], nll_reduction=tr["nll_reduction"], seed=config["seed"],
                   knn_coreset_ratio=config["strategy"]["knn_coreset_ratio"])

    def loss(self) -> TailAwareLoss:
        """The training objective these settings describe."""
        return TailAwareLoss(self.tail_weight, self.top_k_ratio, self.logdet_reg, self.nll_reduction)

    def batch_seed(self, task: int) -> int:
        """Seed of task ``task``'s batch order (and of the kNN reference's coreset)."""
        return self.seed * 1_000_003 + task


@dataclass(frozen=True)
class ScoreSettings:
    """How patch scores become image scores, maps and metrics (``scoring.*``, ``evaluation.batch_size``)."""

    input_size: int  # side of the anomaly maps, the cropped input's (features.input_size)
    image_top_k: int
    map_sigma: float
    aupro_fpr_limit: float
    batch_size: int

    @classmethod
    def from_config(cls, config: Config) -> "ScoreSettings":
        sc = config["scoring"]
        return cls(input_size=config["features"]["input_size"], image_top_k=sc["image_top_k"],
                   map_sigma=sc["map_sigma"], aupro_fpr_limit=sc["aupro_fpr_limit"],
                   batch_size=config["evaluation"]["batch_size"])
