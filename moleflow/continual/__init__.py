"""Continual training and evaluation: strategies, the training loop, checkpoints and run summaries."""

from moleflow.continual.accounting import parameter_counts
from moleflow.continual.experiment import run
from moleflow.continual.learner import Learner
from moleflow.continual.strategies import STRATEGIES

__all__ = ["Learner", "STRATEGIES", "parameter_counts", "run"]
