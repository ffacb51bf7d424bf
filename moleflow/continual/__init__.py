"""Continual training and evaluation: strategies, the training loop, checkpoints and run summaries."""

from moleflow.continual.learner import STRATEGIES, Learner, parameter_counts
from moleflow.continual.experiment import run

__all__ = ["Learner", "STRATEGIES", "parameter_counts", "run"]
