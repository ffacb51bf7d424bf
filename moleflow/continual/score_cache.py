"""Scores of a run's test sets kept between its evaluations, for models that did not change.

After each task a run evaluates every task seen so far (the accuracy matrices need each
task's row after every later task). Under a strategy that leaves a task's model alone
afterwards (MoLE-Flow's frozen base and per-task adapters, Full-Copy's separate models, the
kNN reference's per-task banks), task ``i``'s test set is scored again by exactly the
tensors that scored it before, so the scores and the metrics read from them are the
same numbers: evaluation goes through fixed chunks in dataset order, so a model gives
bit-identical scores for the same rows. :class:`ScoreCache` keeps them, keyed by a
digest of the tensors the scores are computed from (:meth:`Learner.scoring_state`), and
computes again whenever those tensors differ in one bit (Sequential's base after every
task, EWC's, Replay's). A run of ``T`` tasks then scores ``T`` test sets once each (and the
images the router sends elsewhere) instead of ``T (T + 1) / 2`` times.

The caller takes the digest (:meth:`ScoreCache.key`) for each evaluation, never keeps it
across evaluations, so a model changed between two evaluations (training, a checkpoint
loaded) is never served an old score. Each slot (test set, serving task, rows, re-scored
top-k) keeps only its newest entry. One cache serves one run: its test sets and scoring
settings are part of no key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from moleflow.continual.structure import digest

if TYPE_CHECKING:  # evaluate imports this module
    from moleflow.continual.evaluate import TaskScores
    from moleflow.continual.learner import Learner


class ScoreCache:
    """Raw scores and oracle metrics by ``(test set, serving task, rows, top-k)`` and model digest.

    Example:
        >>> cache = ScoreCache()
        >>> cache.hits, cache.misses
        (0, 0)
    """

    def __init__(self) -> None:
        self._scores: dict[tuple, tuple[str, TaskScores]] = {}
        self._metrics: dict[int, tuple[str, Any]] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(learner: Learner, task: int) -> str:
        """Digest of the tensors task ``task``'s patch scores are computed from (at this moment)."""
        return digest(learner.scoring_state(task))

    def scores(
        self,
        key: str,
        test_task: int,
        serving: int,
        rows: np.ndarray,
        rescore: tuple[int, ...],
        compute: Callable[[], TaskScores],
    ) -> TaskScores:
        """Scores of test set ``test_task``'s ``rows`` under task ``serving``, whose scoring state has digest
        ``key`` (``compute()`` unless kept for that digest). The result is shared with later lookups: read it,
        never write into it."""
        slot = (test_task, serving, np.asarray(rows, dtype=np.int64).tobytes(), tuple(rescore))
        kept = self._scores.get(slot)
        if kept is not None and kept[0] == key:
            self.hits += 1
            return kept[1]
        self.misses += 1
        value = compute()
        self._scores[slot] = (key, value)
        return value

    def oracle_metrics(self, key: str, test_task: int, compute: Callable[[], Any]) -> Any:
        """The metrics of test set ``test_task`` under its own task's model, whose scoring state has digest ``key``
        (``compute()`` unless kept for that digest): a deterministic function of the oracle scores, which that
        model fixes."""
        kept = self._metrics.get(test_task)
        if kept is not None and kept[0] == key:
            return kept[1]
        value = compute()
        self._metrics[test_task] = (key, value)
        return value
