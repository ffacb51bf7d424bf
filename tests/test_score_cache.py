"""The evaluation's score cache: the same numbers as scoring again, and never a score of a model that changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests_helpers import continual_synth, tiny

from moleflow.continual import Learner
from moleflow.continual.evaluate import TaskEvaluation, evaluate_task
from moleflow.continual.score_cache import ScoreCache
from moleflow.continual.settings import ScoreSettings, TrainSettings
from moleflow.continual.tasks import TaskData, load_tasks
from moleflow.continual.train import train_task
from moleflow.features import FeatureStore
from moleflow.model.mole_flow import task_of_parameter

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return continual_synth(tmp_path_factory.mktemp("score-cache"))


def _trained(config: dict, upto: int) -> tuple[Learner, list[TaskData]]:
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    for task in range(upto):
        learner.add_task(np.asarray(tasks[task].train.router))
        result = train_task(learner, task, tasks[task].train.patches, TrainSettings.from_config(config), CPU)
        assert result.status == "ok"
    return learner, tasks


def _same(a: TaskEvaluation, b: TaskEvaluation) -> None:
    """Bit for bit: metrics, routing and every routed score."""
    assert a.oracle == b.oracle and a.routed == b.routed
    assert a.image_auroc_by_top_k == b.image_auroc_by_top_k and a.replaced == b.replaced
    np.testing.assert_array_equal(a.routed_to, b.routed_to)
    np.testing.assert_array_equal(a.routed_scores.image, b.routed_scores.image)
    assert a.routed_scores.maps is not None and b.routed_scores.maps is not None
    np.testing.assert_array_equal(a.routed_scores.maps, b.routed_scores.maps)


def test_a_frozen_task_is_scored_once_and_its_numbers_are_the_uncached_ones(
    data: Path, cache: Path, tmp_path: Path
) -> None:
    config = tiny(data, cache, "dataset.categories=[cap,tile,screw]")
    scoring = ScoreSettings.from_config(config)
    learner, tasks = _trained(config, 1)
    scores = ScoreCache()
    first = evaluate_task(learner, 0, tasks[0], scoring, CPU, scores)
    assert (scores.hits, scores.misses) == (0, 1)
    for task in (1, 2):  # later tasks train their own adapters; task 0's base and adapters stay as they were
        learner.add_task(np.asarray(tasks[task].train.router))
        assert (
            train_task(learner, task, tasks[task].train.patches, TrainSettings.from_config(config), CPU).status == "ok"
        )
        kept = evaluate_task(learner, 0, tasks[0], scoring, CPU, scores)
        _same(kept, evaluate_task(learner, 0, tasks[0], scoring, CPU))  # the uncached evaluation, computed now
    # task 0's oracle scores came from the cache twice; each lookup of an image the router sent elsewhere too
    assert scores.hits >= 2 and scores.misses == 1 + int(np.sum(np.unique(kept.routed_to) != 0))
    assert first.oracle == kept.oracle  # frozen: the same numbers as after its own task


def test_one_changed_bit_of_a_model_is_scored_again(data: Path, cache: Path) -> None:
    config = tiny(data, cache, "dataset.categories=[cap,tile,screw]")
    scoring = ScoreSettings.from_config(config)
    learner, tasks = _trained(config, 1)
    scores = ScoreCache()
    before = evaluate_task(learner, 0, tasks[0], scoring, CPU, scores)
    model, local = learner.model_for(0)
    params = dict(model.named_parameters())
    first_s1 = next(n for n in params if n.endswith("subnet.s1.base.weight"))
    for name in (first_s1, "whitening.g.0"):  # the shared base, the task's own
        flat = params[name].view(-1)
        with torch.no_grad():
            flat[0] = torch.nextafter(flat[0], torch.tensor(np.inf))  # the smallest change a float32 can make
        misses = scores.misses
        evaluate_task(learner, 0, tasks[0], scoring, CPU, scores)
        assert scores.misses == misses + 1, name  # one bit is a new model: never served an old score
        with torch.no_grad():
            flat[0] += 0.5  # a change the scores show
        after = evaluate_task(learner, 0, tasks[0], scoring, CPU, scores)
        assert scores.misses == misses + 2, name
        _same(after, evaluate_task(learner, 0, tasks[0], scoring, CPU))
        assert after.routed_scores.image.tobytes() != before.routed_scores.image.tobytes(), name
        before = after
    assert local == 0 and before.routed_to.shape == after.routed_to.shape


def test_the_scoring_state_is_what_the_scores_are_computed_from(data: Path, cache: Path) -> None:
    """Per strategy: a task's own adapters and the base; the joint flow's task 0 for every task; knn's banks."""
    base = tiny(data, cache, "dataset.categories=[cap,tile,screw]")
    learner, _ = _trained(base, 2)
    names0, names1 = set(learner.scoring_state(0)), set(learner.scoring_state(1))
    shared = names0 & names1
    assert shared and all(task_of_parameter(n.removeprefix("models.0.")) is None for n in shared)  # the base alone
    assert {n for n in names0 - shared if task_of_parameter(n.removeprefix("models.0.")) != 0} == set()
    assert any(".lora_A.1" in n for n in names1) and not any(".lora_A.0" in n for n in names1)
    assert any(".lora_A.0" in n for n in names0) and not any(".lora_A.1" in n for n in names0)
    # the model's own storage, not copies: the digest reads the model as it is now
    model, _ = learner.model_for(1)
    storage = {p.data_ptr() for p in model.parameters()}
    assert all(v.data_ptr() in storage for n, v in learner.scoring_state(1).items() if "lora" in n)

    joint, _ = _trained(tiny(data, cache, "dataset.categories=[cap,tile,screw]", "strategy.name=joint"), 0)
    for _ in range(2):
        joint.add_task(None)
    assert set(joint.scoring_state(1)) == set(joint.scoring_state(0))  # task 0's adapters serve every task

    for bank, expected in (
        ("per_task", {"knn.bank_1"}),
        ("replaced", {"knn.bank_2"}),
        ("joint", {"knn.bank_0", "knn.bank_1", "knn.bank_2"}),
    ):
        config = tiny(
            data, cache, "dataset.categories=[cap,tile,screw]", "strategy.name=knn", f"strategy.knn_bank={bank}"
        )
        knn, _ = _trained(config, 3)
        assert set(knn.scoring_state(1)) == expected, bank


def test_a_changed_base_is_scored_again_under_sequential(data: Path, cache: Path) -> None:
    config = tiny(data, cache, "dataset.categories=[cap,tile,screw]", "strategy.name=sequential")
    scoring = ScoreSettings.from_config(config)
    learner, tasks = _trained(config, 1)
    scores = ScoreCache()
    evaluate_task(learner, 0, tasks[0], scoring, CPU, scores)
    learner.add_task(np.asarray(tasks[1].train.router))
    assert train_task(learner, 1, tasks[1].train.patches, TrainSettings.from_config(config), CPU).status == "ok"
    after = evaluate_task(learner, 0, tasks[0], scoring, CPU, scores)
    assert scores.hits == 0  # the base moved: nothing is served from before
    _same(after, evaluate_task(learner, 0, tasks[0], scoring, CPU))


class _Fixed:
    """A learner whose scoring state never changes (what the cache reads of it)."""

    def __init__(self) -> None:
        self.weight = torch.zeros(3)

    def scoring_state(self, task: int) -> dict[str, torch.Tensor]:
        return {f"w{task}": self.weight}


def test_a_slot_is_its_test_set_serving_task_rows_and_top_k() -> None:
    from moleflow.continual.evaluate import TaskScores

    learner, cache, made = _Fixed(), ScoreCache(), []

    def get(test: int, serving: int, rows: list[int], rescore: tuple[int, ...] = ()) -> TaskScores:
        def compute() -> TaskScores:
            made.append((test, serving, tuple(rows), rescore))
            return TaskScores(np.array([float(len(made))]), None)

        key = cache.key(learner, serving)  # type: ignore[arg-type]
        return cache.scores(key, test, serving, np.array(rows), rescore, compute)

    first = get(0, 1, [0, 1])
    for other in ((1, 1, [0, 1]), (0, 0, [0, 1]), (0, 1, [0, 2]), (0, 1, [0, 1], (3,))):
        assert get(*other) is not first
    assert get(0, 1, [0, 1]) is first and len(made) == 5 and (cache.hits, cache.misses) == (1, 5)
    learner.weight[0] = 1.0  # the model changed in place: the same slot is computed again
    assert get(0, 1, [0, 1]) is not first and len(made) == 6


def test_the_joint_flow_s_test_sets_keep_their_own_metrics(data: Path, cache: Path) -> None:
    """Every task is served by the same tensors (task 0's): the test sets share a digest, never metrics."""
    config = tiny(data, cache, "dataset.categories=[cap,tile,screw]", "strategy.name=joint")
    scoring = ScoreSettings.from_config(config)
    learner, tasks = _trained(config, 0)
    for task in range(2):
        learner.add_task(np.asarray(tasks[task].train.router))
    assert ScoreCache.key(learner, 0) == ScoreCache.key(learner, 1)
    scores = ScoreCache()
    for task in range(2):
        _same(
            evaluate_task(learner, task, tasks[task], scoring, CPU, scores),
            evaluate_task(learner, task, tasks[task], scoring, CPU),
        )


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cap`` and ``cap_twin`` (the same product from another generator seed): the router sends images across."""
    from moleflow.data.synth import SynthCounts, generate

    root, other = tmp_path_factory.mktemp("cache-twins"), tmp_path_factory.mktemp("cache-twin-source")
    counts = SynthCounts(train=8, test_good=3, test_per_defect=2)
    generate(root, seed=0, size=64, categories=["cap"], counts=counts)
    generate(other, seed=5, size=64, categories=["cap"], counts=counts)
    (other / "cap").rename(root / "cap_twin")
    return root


def test_an_image_sent_elsewhere_is_scored_again_when_that_task_s_model_changed(twins: Path, cache: Path) -> None:
    config = tiny(twins, cache, "dataset.categories=[cap,cap_twin]")
    scoring = ScoreSettings.from_config(config)
    learner, tasks = _trained(config, 0)
    for task in range(2):
        learner.add_task(np.asarray(tasks[task].train.router))
    scores = ScoreCache()
    sent = [evaluate_task(learner, t, tasks[t], scoring, CPU, scores).routed_to for t in range(2)]
    test = next(t for t in range(2) if np.any(sent[t] != t))  # a test set with images routed to the other task
    other = 1 - test
    model, _ = learner.model_for(other)
    with torch.no_grad():  # the other task's own whitening shift: its scores move, the test set's own do not
        dict(model.named_parameters())[f"whitening.b.{other}"].add_(0.5)
    again = evaluate_task(learner, test, tasks[test], scoring, CPU, scores)
    _same(again, evaluate_task(learner, test, tasks[test], scoring, CPU))


def test_scores_follow_the_runs_top_k_and_padding(data: Path, cache: Path) -> None:
    """The image scores, maps and re-scored top-k come from the kept patch scores with the run's own settings
    (neither ``image_top_k = 1`` nor the ``mirror`` padding is the scoring functions' default)."""
    from moleflow.continual.evaluate import score_rows
    from moleflow.continual.tasks import rows_on
    from moleflow.model import anomaly_maps, image_scores

    config = tiny(
        data, cache, "dataset.categories=[cap,tile,screw]", "scoring.image_top_k=1", "scoring.map_padding=mirror"
    )
    scoring = ScoreSettings.from_config(config)
    learner, tasks = _trained(config, 1)
    test = tasks[0].test
    rows = np.arange(len(test.labels))
    got = score_rows(learner, 0, test.patches, rows, scoring, CPU, (5,))
    assert got.patches is not None
    patches = torch.from_numpy(got.patches)
    with torch.no_grad():
        assert torch.equal(patches, learner.patch_scores(0, rows_on(test.patches[rows], CPU)))
    maps = anomaly_maps(patches, scoring.input_size, scoring.map_sigma, "mirror").numpy()
    np.testing.assert_array_equal(got.image, image_scores(patches, 1).numpy())
    np.testing.assert_array_equal(got.maps, maps)
    np.testing.assert_array_equal(got.by_top_k[5], image_scores(patches, 5).numpy())
    assert not np.array_equal(got.image, image_scores(patches).numpy())  # the settings matter on these scores
    assert got.maps is not None and not np.array_equal(
        got.maps, anomaly_maps(patches, scoring.input_size, scoring.map_sigma).numpy()
    )


def test_two_test_sets_sent_to_one_task_keep_their_own_scores(
    data: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images of two test sets with the same row numbers, both sent to task 2: one model, one digest, the same rows,
    but each test set's own scores (the slot holds the test set)."""
    config = tiny(data, cache, "dataset.categories=[cap,tile,screw]")
    scoring = ScoreSettings.from_config(config)
    learner, tasks = _trained(config, 3)
    assert len(tasks[0].test.labels) == len(tasks[1].test.labels)
    monkeypatch.setattr(learner.router, "forward", lambda feats: torch.full((len(feats),), 2, dtype=torch.long))
    scores = ScoreCache()
    kept = [evaluate_task(learner, t, tasks[t], scoring, CPU, scores) for t in (0, 1)]
    for t, found in enumerate(kept):
        assert np.all(found.routed_to == 2)
        _same(found, evaluate_task(learner, t, tasks[t], scoring, CPU))  # uncached, computed now
    assert not np.array_equal(kept[0].routed_scores.image, kept[1].routed_scores.image)
