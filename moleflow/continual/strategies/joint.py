"""The joint flow (``joint``): no continual learning. One model (base and one set of adapters, task 0's, serving
every task) is trained once, after the last task has arrived, on every task's training patches at once, and then
evaluated on every task; nothing is trained or measured before that, so it has no forgetting. It keeps every
task's training feature maps (float16: it must train on all of them at once) and no router prototype."""

from __future__ import annotations

from collections.abc import Sequence

from moleflow.config import Config
from moleflow.continual.strategies.base import CostInputs, Models, Strategy, flow_counts, with_overheads


class Joint(Strategy):
    """One flow trained on every task's data after the last task."""

    name = "joint"
    waits_for_last_task = True

    def add_task(self, learner: Models, task: int) -> None:
        if task == 0:  # one set of adapters serves every task
            learner.flow(0).add_task()

    def serving(self, task: int) -> tuple[int, int]:
        return 0, 0

    def warms_up(self, task: int) -> bool:
        return False  # trained once, from scratch

    def parameter_counts(self, config: Config, dim: int) -> dict[str, float]:
        """Task 0's adapters serve every task: counted with the base; ``per_task`` is 0."""
        counts = flow_counts(config, dim)
        return with_overheads(counts["base"] + counts["task0"], 0, 0)

    def stored_feature_bytes(self, config: Config, dim: int, patches_per_image: int, train_images: int) -> float:
        return 2.0 * train_images * patches_per_image * dim

    def router_bytes(self, dim: int) -> float:
        return 0.0

    def run_seconds(self, cost: CostInputs) -> float:
        """One training from scratch on every task's images, one evaluation of every task."""
        steps = cost.settings.epochs * cost.settings.steps_per_epoch(sum(n for n, _ in cost.images))
        return steps * cost.step_s[0] + cost.eval_image_s * sum(t for _, t in cost.images)

    def smoke_timings(
        self, per_task: list[float], images: Sequence[tuple[int, int]], done: int
    ) -> tuple[float, float, int]:
        """One training after the last task: its seconds shared out as one step per task; every task evaluated once."""
        if not per_task:
            return super().smoke_timings(per_task, images, done)
        share = per_task[-1] / len(per_task)
        return share, share, sum(images[i][1] for i in range(done))
