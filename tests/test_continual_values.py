"""The continual loop's small decisions against values by hand: the router prototype's rows, the authors'
NaN handling of scores, the refusals' words, a strategy defined twice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from moleflow.continual.evaluate import TaskScores, nan_to_num
from moleflow.continual.learner import Learner, prototype_rows
from moleflow.continual.strategies import strategy_named
from moleflow.continual.summary_file import read_summary
from moleflow.errors import MoleflowError

#: prototype_rows(10, 4, seed 3, task 1) as this release draws it (written down once from its output)
PINNED = [0, 1, 3, 4, 5, 6, 7, 8]


def test_prototype_rows_are_a_seeded_pass_without_its_last_incomplete_batch() -> None:
    # the stream is pinned: a run's router prototype must not change between releases (its rows by hand from
    # NumPy's generator seeded with (seed, task, 0xB0B), the value this release and the ones before it used)
    order = np.random.default_rng([3, 1, 0xB0B]).permutation(10)
    assert prototype_rows(10, 4, 3, 1).tolist() == sorted(order[:8].tolist())  # 10 - 10 % 4 = 8 rows
    assert prototype_rows(10, 4, 3, 1).tolist() == PINNED
    assert prototype_rows(3, 4, 3, 1).tolist() == [0, 1, 2]  # fewer than a batch: all of them
    assert prototype_rows(8, 4, 0, 0).tolist() == list(range(8))  # whole batches: every row
    assert prototype_rows(10, 4, 3, 2).tolist() != prototype_rows(10, 4, 3, 1).tolist()  # per task
    assert prototype_rows(10, 4, 4, 1).tolist() != prototype_rows(10, 4, 3, 1).tolist()  # per seed


def test_nan_to_num_is_the_authors_and_counts_what_it_changed() -> None:
    image = np.array([0.5, np.nan, np.inf, -np.inf], dtype=np.float32)
    maps = np.array([[[1.0, np.nan]], [[np.inf, 2.0]], [[0.0, 0.0]], [[-np.inf, 3.0]]], dtype=np.float32)
    fixed, count = nan_to_num(TaskScores(image, maps, {3: np.array([np.nan, 1.0, 2.0, 3.0])}))
    assert fixed.image.tolist() == [0.5, 0.0, 1.0, 0.0] and count == 3 + 3 + 1
    assert fixed.maps is not None and fixed.maps.tolist() == [[[1.0, 0.0]], [[1.0, 2.0]], [[0.0, 0.0]], [[0.0, 3.0]]]
    assert fixed.by_top_k[3].tolist() == [0.0, 1.0, 2.0, 3.0]
    clean = np.array([0.1, 0.2])
    same, none = nan_to_num(TaskScores(clean, None))
    assert none == 0 and same.maps is None and same.image is clean  # nothing to fix: the same array, no maps made


def test_a_patch_scoring_learner_refuses_image_embeddings() -> None:
    from moleflow.config import load_profile

    learner = Learner.from_config(load_profile("cpu"), 8)
    with pytest.raises(ValueError) as error:
        learner.image_scores(0, torch.zeros(2, 8))
    assert str(error.value) == "the frozen_base strategy scores patches, not image embeddings"


def test_dne_densities_draw_from_the_runs_seed() -> None:
    density = strategy_named("dne", {"dne_density": "routed"}).densities(7)
    assert density is not None and (density.density, density.seed) == ("routed", 7)


def test_the_joint_flow_without_a_training_still_counts_its_evaluated_images() -> None:
    first, later, evaluated = strategy_named("joint").smoke_timings([], [(10, 6), (7, 5), (9, 4)], 2)
    assert np.isnan(first) and np.isnan(later) and evaluated == 6 + 6 + 5


def test_a_strategy_defined_twice_is_refused_naming_both_modules() -> None:
    from moleflow.continual.strategies.base import REGISTRY, Strategy

    before = dict(REGISTRY)
    with pytest.raises(TypeError) as error:
        type("Again", (Strategy,), {"name": "sequential", "__module__": "my_lab.strategies"})
    assert str(error.value) == (
        "strategy 'sequential' is defined twice (moleflow.continual.strategies.sequential, my_lab.strategies)"
    )
    assert REGISTRY == before


def test_a_summary_that_cannot_be_read_says_what_happened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "summary.json"
    path.write_text("{}", encoding="utf-8")

    def fails(self: Path, encoding: str | None = None) -> str:
        raise OSError  # no message: the exception's type names it

    monkeypatch.setattr(Path, "read_text", fails)
    with pytest.raises(MoleflowError) as error:
        read_summary(path)
    assert str(error.value).startswith(f"{path}: truncated or not JSON (OSError); rerun")


# ------------------------------------------------------------------------------- a whole model per task, each form
def _learner(strategy: str, tasks: int = 3, model_affine: str = "trained", **options: str) -> Learner:
    """A learner of ``strategy`` with ``tasks`` tasks added (small models on 8-vectors), its own options given
    without their prefix (``mixer="shared"`` is ``strategy.separated_mixer``)."""
    from moleflow.config import apply_overrides, load_profile

    sets = {"strategy.name": strategy, "model.coupling_blocks": 1, "model.lora_rank": 2, "model.dia_blocks": 1}
    sets |= {"model.global_affine": model_affine} | {f"strategy.{strategy}_{k}": v for k, v in options.items()}
    learner = Learner.from_config(apply_overrides(load_profile("cpu"), sets), 8)
    for _ in range(tasks):
        learner.add_task(None)
    return learner


def _gamma(learner: Learner, task: int) -> float:
    model, local = learner.model_for(task)
    assert model.whitening is not None
    return float(model.whitening.gamma_beta(local)[0][0].detach())


def test_each_tasks_model_starts_its_input_adapter_in_the_form_asked() -> None:
    first, later = _learner("separated"), _learner("separated", adapters="later")
    assert [_gamma(first, t) for t in range(3)] == pytest.approx([1.0, 1.0, 1.0])  # gamma_init_first (cpu profile)
    assert [_gamma(later, t) for t in range(3)] == pytest.approx([1.0, 1.25, 1.25])  # task 0 is first either way


def _ids(params: list[torch.nn.Parameter]) -> set[int]:
    return {id(p) for p in params}


def test_a_later_tasks_model_trains_its_own_mixer_unless_task_0s_is_shared() -> None:
    own, shared = _learner("separated"), _learner("separated", mixer="shared")
    assert len({id(own.flow(t).mixer) for t in range(3)}) == 3
    assert shared.flow(1).mixer is shared.flow(0).mixer and shared.flow(2).mixer is shared.flow(0).mixer
    for learner, trained_later in ((own, True), (shared, False)):
        for task in range(3):
            model, _ = learner.model_for(task)
            assert model.mixer is not None
            mixer = _ids(list(model.mixer.parameters()))
            trainable = _ids(learner.trainable_parameters(task))
            assert mixer and (mixer <= trainable) == (task == 0 or trained_later), (task, trained_later)
            assert (trainable & mixer) == (mixer if task == 0 or trained_later else set())


def test_a_later_tasks_model_trains_its_global_affine_when_asked() -> None:
    def trained(global_affine: str, separated: str) -> tuple[set[str], set[str]]:
        learner = _learner("separated", 3, global_affine, global_affine=separated)
        names = []
        for task in range(2):
            model, _ = learner.model_for(task)
            ids = _ids(learner.trainable_parameters(task))
            names.append({n for n, p in model.named_parameters() if id(p) in ids})
        return names[0], names[1]

    task0, task1 = trained("frozen", "model")
    assert not any(n.endswith(("global_scale", "global_offset", "w_perm", "w_perm_inv")) for n in task0 | task1)
    task0, task1 = trained("frozen", "trained")
    affine = {n for n in task1 if n.endswith(("global_scale", "global_offset"))}
    assert affine and not any(n.endswith(("global_scale", "global_offset")) for n in task0)
    assert not any(n.endswith(("w_perm", "w_perm_inv")) for n in task1)  # permutations are never trained
    assert task1 - affine == trained("frozen", "model")[1]


def test_which_strategies_warm_up_a_later_task() -> None:
    for name in ("frozen_base", "sequential", "ewc", "replay"):
        assert [strategy_named(name).warms_up(t) for t in range(3)] == [False, True, True], name
    for name in ("separated", "joint"):
        assert [strategy_named(name).warms_up(t) for t in range(3)] == [False, False, False], name


# ------------------------------------------------------------------------ the sequential baseline in the authors' form
def test_the_authors_sequential_freezes_the_base_linears_after_task_0() -> None:
    learner = _learner("sequential", linears="frozen")
    model = learner.flow(0)
    linears, base = _ids(model.base_linear_parameters()), _ids(model.base_parameters())
    assert linears and linears < base
    assert _ids(learner.trainable_parameters(0)) == base | _ids(model.task_parameters(0))
    for task in (1, 2):  # every other shared parameter and the task's own
        assert _ids(learner.trainable_parameters(task)) == (base - linears) | _ids(model.task_parameters(task))
    plain = _learner("sequential")
    assert _ids(plain.trainable_parameters(1)) == _ids(plain.flow(0).base_parameters()) | _ids(
        plain.flow(0).task_parameters(1)
    )


def test_the_authors_sequential_steps_a_later_tasks_adapters_twice() -> None:
    for updates, doubled in (("twice", True), ("once", False)):
        learner = _learner("sequential", adapter_updates=updates)
        model = learner.flow(0)
        for task in range(3):
            trainable = learner.trainable_parameters(task)
            optimised = learner.strategy.optimised_parameters(model, task, task, trainable)
            own = model.task_parameters(task)
            expected = own + trainable if doubled and task > 0 else trainable
            assert [id(p) for p in optimised] == [id(p) for p in expected], (updates, task)


def test_ewc_sums_the_fishers_of_every_task_and_anchors_the_base() -> None:
    learner = _learner("ewc", tasks=1)
    name = next(iter(learner.base_named_parameters(0)))
    learner.consolidate(0, {name: torch.tensor([1.0, 2.0])})
    learner.consolidate(1, {name: torch.tensor([0.5, 0.5])})
    assert learner.fisher[name].tolist() == [1.5, 2.5]  # online EWC: the sum over the tasks so far
    base = learner.base_named_parameters(0)
    assert set(learner.anchor) == set(base)
    assert all(torch.equal(learner.anchor[n], p.detach()) and learner.anchor[n] is not p for n, p in base.items())


# ------------------------------------------------------------------- the structural records of the trained models
def test_fingerprints_digest_names_dtypes_shapes_and_bytes_in_name_order() -> None:
    import hashlib

    from moleflow.continual.structure import fingerprints

    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1.5], dtype=torch.float64)}
    sha = hashlib.sha256()
    sha.update(b"b|torch.float64|(1,)|" + np.array([1.5]).tobytes())
    sha.update(b"w|torch.float32|(6,)|" + np.arange(6, dtype=np.float32).tobytes())
    by_hand = sha.hexdigest()[:16]
    assert fingerprints({}, [tensors, dict(reversed(tensors.items()))]) == {"base": None, "tasks": [by_hand, by_hand]}
    assert fingerprints(tensors, []) == {"base": by_hand, "tasks": []}
    changed = {**tensors, "w": tensors["w"].clone()}
    changed["w"][1, 2] = 5.5
    assert fingerprints(changed, [])["base"] != by_hand


def test_invertibility_checks_every_serving_model_and_the_jacobian_of_the_last_task_only() -> None:
    from moleflow.continual.structure import invertibility

    learner = _learner("frozen_base", tasks=2)
    serving = learner.serving_models(2)
    assert [(id(model), local) for model, local in serving] == [(id(learner.flow(0)), 0), (id(learner.flow(0)), 1)]
    rng = np.random.default_rng(0)
    patches = [rng.normal(size=(5, 4, 4, 8)).astype(np.float16) for _ in range(2)]
    found = invertibility(serving, patches, torch.device("cpu"))
    assert found is not None and [t["task"] for t in found["tasks"]] == [0, 1]
    first, last = found["tasks"]
    assert first["logdet_autograd"] is None and first["logdet_scale"] is None  # checked after its own task
    assert last["logdet_autograd"] is not None and last["logdet_autograd"] < 1e-6 * max(1.0, last["logdet_scale"])
    assert found["logdet_autograd"] == last["logdet_autograd"]
    assert found["relative_logdet_autograd"] == last["logdet_autograd"] / max(1.0, last["logdet_scale"])
    assert found["max_reconstruction"] == max(first["reconstruction"], last["reconstruction"]) < 1e-4
    assert found["max_relative_reconstruction"] == max(
        t["reconstruction"] / t["reconstruction_scale"] for t in found["tasks"]
    )
    assert found["max_inverse_logdet"] == max(first["inverse_logdet"], last["inverse_logdet"]) < 1e-3
    assert _learner("knn", tasks=2).serving_models(2) == [] and invertibility([], [], torch.device("cpu")) is None


def _states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_runs_flows_and_adapters_are_drawn_from_its_seed_and_their_number() -> None:
    """A model ``salt`` of seed ``s`` from ``manual_seed(s * 100003 + salt)``, task ``t``'s adapters from
    ``manual_seed(s * 100003 + 7919 (t + 1))``, by hand; the caller's random stream is left as it was."""
    from moleflow.config import apply_overrides, load_profile
    from moleflow.model import MoLEFlow

    config = apply_overrides(
        load_profile("cpu"), {"seed": 5, "model.coupling_blocks": 1, "model.lora_rank": 2, "model.dia_blocks": 1}
    )
    learner = Learner.from_config(config, 8)
    torch.manual_seed(5 * 100_003 + 0)  # the run's first flow, built with the learner, is model 0
    assert _states_equal(learner.flow(0).state_dict(), MoLEFlow(learner.settings.model_config(0)).state_dict())
    torch.manual_seed(123)
    before = torch.get_rng_state()
    model = learner.new_model(3)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(5 * 100_003 + 3)
    assert _states_equal(model.state_dict(), MoLEFlow(learner.settings.model_config(3)).state_dict())

    torch.manual_seed(7)
    before = torch.get_rng_state()
    learner.add_task(None)
    learner.add_task(None)
    assert torch.equal(torch.get_rng_state(), before) and learner.n_tasks == 2
    by_hand = Learner.from_config(config, 8)
    for task in range(2):
        torch.manual_seed(5 * 100_003 + 7919 * (task + 1))
        by_hand.strategy.add_task(by_hand, task)
        by_hand.n_tasks += 1
    assert _states_equal(learner.flow(0).state_dict(), by_hand.flow(0).state_dict())


def test_asking_a_strategy_for_what_it_has_not_names_it() -> None:
    from moleflow.config import apply_overrides, load_profile

    knn = Learner.from_config(apply_overrides(load_profile("cpu"), {"strategy.name": "knn"}), 8)
    with pytest.raises(ValueError, match="^the knn strategy has no flow model$"):
        knn.model_for(0)
    dne = Learner.from_config(apply_overrides(load_profile("cpu"), {"strategy.name": "dne"}), 8)
    with pytest.raises(ValueError, match=r"^the dne strategy has no patch scores \(no anomaly map\)$"):
        dne.patch_scores(0, torch.zeros(1, 2, 2, 8))
