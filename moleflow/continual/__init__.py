"""Continual training and evaluation: strategies, the training loop, checkpoints and run summaries."""

from moleflow.continual.experiment import run
from moleflow.continual.learner import Learner
from moleflow.continual.strategies import STRATEGIES, parameter_counts

__all__ = ["Learner", "STRATEGIES", "parameter_counts", "run"]
