"""The authors' variants exactly: each "(authors')" reading does what their code does, checked by hand.

The soft-LayerNorm fallback of their --no_whitening_adapter, --no_lora without task biases,
their Sequential's adapters updated twice per step, Full-Copy's trained global affine and
later-task adapters, permutations that follow the seed, scipy's half-sample reflection for
the map's blur, their non-finite evaluation handling, their task-0 gamma, their router
prototype, and their baselines script's EWC (batch Fisher, every patch in the image score).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import scipy.ndimage as ndimage
import torch
import torch.nn.functional as F
import yaml
from tests_helpers import authors, fidelity_synth, validated

from moleflow.config import defaults, load_config
from moleflow.continual import Learner
from moleflow.continual import train as train_module
from moleflow.continual.evaluate import TaskScores, evaluate_task, metrics_of, nan_to_num
from moleflow.continual.learner import prototype_rows
from moleflow.continual.settings import ScoreSettings, TrainSettings
from moleflow.continual.strategies import memory_per_task
from moleflow.continual.tasks import load_tasks
from moleflow.continual.train import empirical_fisher, train_task
from moleflow.features import FeatureStore
from moleflow.model import gaussian_blur, image_scores
from moleflow.model.adapters import FiLMAdapter, FiLMInputAdapters, WhiteningAdapter
from moleflow.planning.plan import plan_runs

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fidelity_synth(tmp_path_factory.mktemp("synth"))


def _tasks(config: dict) -> list:
    return load_tasks(config, FeatureStore(config, progress=False))


def _train(learner: Learner, tasks: list, task: int, config: dict) -> None:
    learner.add_task(np.asarray(tasks[task].train.router))
    assert train_task(learner, task, tasks[task].train.patches, TrainSettings.from_config(config), CPU).status == "ok"


# ---------------------------------------------------------------- the fallback of --no_whitening_adapter
def test_soft_ln_fallback_blends_the_layernorm_in_task_0_only() -> None:
    torch.manual_seed(0)
    adapters = FiLMInputAdapters(16, soft_ln=True)
    adapters.add_task(0)
    adapters.add_task(1)
    a0, a1 = (cast(FiLMAdapter, adapters.tasks[t]) for t in "01")
    x = torch.randn(2, 3, 3, 16) * 3 + 1
    # a later task: no LayerNorm at all, y = gamma x + beta, then the gated residual MLP, no blend with x
    y = x * a1.gamma + a1.beta
    assert torch.equal(adapters(x, 1), y + torch.sigmoid(a1.gate) * a1.mlp(y))
    assert not any("norm" in n or "blend" in n for n, _ in a1.named_parameters())
    # task 0: its LayerNorm (with affine) blended in at a learnable 0.01, and 0.9 x + 0.1 adapter(x)
    assert a0.norm is not None and a0.blend is not None and float(a0.blend.detach()) == pytest.approx(0.01)
    ln = F.layer_norm(x, (16,), a0.norm.weight, a0.norm.bias, eps=1e-5)
    z = (0.01 * ln + 0.99 * x) * a0.gamma + a0.beta
    out = adapters(x, 0)
    torch.testing.assert_close(out, 0.9 * x + 0.1 * (z + torch.sigmoid(a0.gate) * a0.mlp(z)))
    out.square().sum().backward()
    assert a0.blend.grad is not None and float(a0.blend.grad) != 0.0  # the blend is trained
    # the 'film' reading keeps its full LayerNorm in a later task
    film = FiLMInputAdapters(16)
    film.add_task(0)
    film.add_task(1)
    f1 = cast(FiLMAdapter, film.tasks["1"])
    assert f1.norm is not None
    y = f1.norm(x) * f1.gamma + f1.beta
    assert torch.equal(film(x, 1), y + torch.sigmoid(f1.gate) * f1.mlp(y))


def test_the_soft_ln_fallback_forgets_nothing_and_keeps_no_layernorm_after_task_0(dataset: Path, cache: Path) -> None:
    config = authors(dataset, cache, "model.whitening=false", "model.whitening_fallback=soft_ln")
    tasks = _tasks(config)
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    _train(learner, tasks, 0, config)
    names = {n for n, _ in learner.named_parameters()}
    assert {"models.0.film.tasks.0.blend", "models.0.film.tasks.0.norm.weight"} <= names
    _train(learner, tasks, 1, config)
    later = {n for n in dict(learner.named_parameters()) if n.startswith("models.0.film.tasks.1.")}
    assert later and not any(".norm." in n or n.endswith("blend") for n in later)


# ---------------------------------------------------------------- every (authors') variant resolves to their values
@pytest.fixture(scope="module")
def paper_variants() -> dict[tuple[str, str], dict]:
    runs = plan_runs(validated(yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())))
    return {(study, name): run.config for run in runs.values() for study, name in run.memberships}


def test_the_paper_grid_resolves_every_authors_variant_to_their_values(paper_variants: dict) -> None:
    v = paper_variants
    wo_lora, kept = v[("ablation", "w/o LoRA")]["model"], v[("ablation", "w/o LoRA (task biases kept)")]["model"]
    assert (wo_lora["lora"], wo_lora["task_bias"]) == (False, False)  # their --no_lora drops the biases too
    assert (kept["lora"], kept["task_bias"]) == (False, True)
    assert v[("ablation", "w/o WA (authors' fallback)")]["model"]["whitening_fallback"] == "soft_ln"
    for study in ("pilot", "strategies"):
        seq = v[(study, "Sequential (authors')")]["strategy"]
        assert (seq["sequential_linears"], seq["sequential_adapter_updates"]) == ("frozen", "twice")
        copy = v[(study, "Full-Copy (authors')")]["strategy"]
        assert (copy["separated_mixer"], copy["separated_global_affine"], copy["separated_adapters"]) == (
            "shared",
            "trained",
            "later",
        )
        ewc = v[(study, "EWC (authors' script)")]
        assert (ewc["strategy"]["ewc_fisher"], ewc["strategy"]["ewc_fisher_images"]) == ("batch", 200)
        assert (ewc["features"]["input_size"], ewc["features"]["embed_dim"], ewc["model"]["coupling_blocks"]) == (
            256,
            1024,
            8,
        )
        assert not any(ewc["model"][k] for k in ("positional_encoding", "whitening", "lora", "task_bias", "dia_blocks"))
        tr = ewc["training"]
        assert (tr["optimizer"], tr["lr"], tr["lr_min_ratio"], tr["clip_grad_norm"]) == ("adamw", 2e-4, 1.0, 0.0)
        assert (tr["tail_weight"], tr["nll_reduction"], tr["logdet_reg"]) == (0.0, "image_sum", 0.0)
        assert ewc["scoring"]["image_top_k"] == 0
    trainable = [cfg for (study, name), cfg in v.items() if study == "interaction_authors" and "|trainable|" in name]
    assert len(trainable) == 6
    for cfg in trainable:
        assert (cfg["model"]["lora"], cfg["model"]["task_bias"]) == (False, False)
        assert cfg["strategy"]["sequential_adapter_updates"] == "twice"
        assert cfg["model"]["whitening"] or cfg["model"]["whitening_fallback"] == "soft_ln"


def test_without_lora_and_task_biases_a_later_task_trains_only_its_input_adapter_and_dia(
    dataset: Path, cache: Path
) -> None:
    config = authors(dataset, cache, "model.lora=false", "model.task_bias=false")
    learner = Learner.from_config(config, 16)
    learner.add_task(np.random.default_rng(0).normal(size=(9, 16)))
    learner.add_task(np.random.default_rng(1).normal(size=(9, 16)))
    names = {n for n, p in learner.named_parameters() if any(p is q for q in learner.trainable_parameters(1))}
    assert names and all(n.startswith(("models.0.whitening.", "models.0.dia.tasks.1.")) for n in names)


# ---------------------------------------------------------------- their Sequential: adapters listed twice
@pytest.mark.parametrize("updates", ["once", "twice"])
def test_the_authors_sequential_steps_the_tasks_adapters_twice(
    dataset: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, updates: str
) -> None:
    config = authors(
        dataset,
        cache,
        "strategy.name=sequential",
        "strategy.sequential_linears=frozen",
        f"strategy.sequential_adapter_updates={updates}",
    )
    tasks = _tasks(config)
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    _train(learner, tasks, 0, config)
    optimizers: list[torch.optim.Optimizer] = []
    clipped: list[list[torch.nn.Parameter]] = []
    real_make, real_clip = train_module.make_optimizer, torch.nn.utils.clip_grad_norm_

    def make(params: list[torch.nn.Parameter], settings: TrainSettings) -> torch.optim.Optimizer:
        optimizers.append(real_make(params, settings))
        return optimizers[-1]

    def clip(params: list[torch.nn.Parameter], norm: float) -> torch.Tensor:
        clipped.append(list(params))
        return real_clip(params, norm)

    monkeypatch.setattr(train_module, "make_optimizer", make)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    _train(learner, tasks, 1, config)
    steps = 2 * config["training"]["epochs"]  # 9 images in batches of 4, drop_last: 2 steps per epoch
    own = {id(p) for p in learner.flow(0).task_parameters(1)}
    state = optimizers[0].state
    shared = [p for p in learner.trainable_parameters(1) if id(p) not in own]
    assert own and shared and len(clipped) == steps
    times = 2 if updates == "twice" else 1
    assert all(state[p]["step"] == times * steps for p in learner.flow(0).task_parameters(1))
    assert all(state[p]["step"] == steps for p in shared)
    listed = [id(p) for p in clipped[0]]  # the clipping's norm counts (and scales) each adapter as often
    assert all(listed.count(i) == times for i in own) and all(listed.count(id(p)) == 1 for p in shared)


# ---------------------------------------------------------------- permutations that follow the seed
def _blocks(model: Any) -> list[Any]:
    """The coupling blocks (their permutation indices) of a flow model."""
    return [b for b in model.flow.modules() if hasattr(b, "perm_index")]


def _permutations(**sets: Any) -> list[list[int]]:
    over = [f"{k.replace('__', '.')}={v}" for k, v in sets.items()]
    config = load_config(overrides=["model.coupling_blocks=3", "model.lora_rank=2", *over])
    learner = Learner.from_config(config, 16)
    for task in range(2):
        learner.add_task(np.random.default_rng(task).normal(size=(6, 16)))
    return [[int(b.perm_index[0]) for b in _blocks(learner.flow(m))] + [m] for m in range(len(learner.models))]


def test_permutations_follow_the_seed_and_fixed_ones_do_not() -> None:
    seed0, again, seed1 = _permutations(seed=0), _permutations(seed=0), _permutations(seed=1)
    assert seed0 == again and seed0 != seed1
    full = [b.perm_index.tolist() for b in _blocks(Learner.from_config(load_config(overrides=["seed=3"]), 32).flow(0))]
    assert len({tuple(p) for p in full}) == len(full) == 6  # each block its own permutation
    assert _permutations(seed=0, model__permutations="fixed") == _permutations(seed=1, model__permutations="fixed")
    # separated: every model of a run draws its own
    models = _permutations(seed=0, strategy__name="separated")
    assert models[0][:-1] != models[1][:-1]
    # fixed: block k's permutation is NumPy's after seeding it with permutation_seed + k, as before the key
    fixed = Learner.from_config(load_config(overrides=["model.permutations=fixed", "model.permutation_seed=5"]), 16)
    for k, block in enumerate(_blocks(fixed.flow(0))):
        np.random.seed(5 + k)
        assert block.perm_index.tolist() == np.random.permutation(16).tolist()


# ---------------------------------------------------------------- Full-Copy as the authors separate
def test_full_copy_authors_trains_later_global_affines_and_starts_later_adapters(dataset: Path, cache: Path) -> None:
    sets = ("strategy.name=separated", "strategy.separated_mixer=shared", "strategy.separated_adapters=later")
    config = authors(dataset, cache, *sets, "strategy.separated_global_affine=trained")
    tasks = _tasks(config)
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    _train(learner, tasks, 0, config)
    learner.add_task(np.asarray(tasks[1].train.router))
    model1, model0 = learner.flow(1), learner.flow(0)
    assert model1.whitening is not None and model0.whitening is not None
    gamma0 = model0.whitening.gamma_beta(0)[0]
    torch.testing.assert_close(model1.whitening.gamma_beta(0)[0], torch.full((16,), 1.25))  # a later task's
    assert float(gamma0[0]) != pytest.approx(1.25)
    affine = {
        n: p.detach().clone() for n, p in model1.named_parameters() if n.endswith(("global_scale", "global_offset"))
    }
    assert train_task(learner, 1, tasks[1].train.patches, TrainSettings.from_config(config), CPU).status == "ok"
    now = dict(model1.named_parameters())
    assert affine and all(not torch.equal(v, now[n]) for n, v in affine.items())  # trained in task 1
    first = [p for n, p in learner.flow(0).named_parameters() if n.endswith("global_offset")]
    assert all(torch.equal(p, torch.zeros_like(p)) for p in first)  # task 0's stays at its initialisation
    # what a later task keeps: its model without task 0's mixer, with its blocks' global affine
    plain = memory_per_task(authors(dataset, cache, "strategy.name=separated"), 16, 64)["params_per_task"]
    theirs = memory_per_task(config, 16, 64)["params_per_task"]
    mixer = 16 * 9 + 16 + 1  # depthwise 3 x 3 kernel, bias, gate
    assert theirs - plain == 2 * 2 * 16 - mixer  # two blocks, a scale and an offset per channel


# ---------------------------------------------------------------- the map's blur: scipy's half-sample reflection
@pytest.mark.parametrize("padding", ["reflect", "mirror"])
@pytest.mark.parametrize("sigma", [1.5, 4.0])
def test_the_blur_extends_the_border_as_scipy_does(padding: str, sigma: float) -> None:
    maps = torch.rand(3, 20, 23, generator=torch.Generator().manual_seed(1))  # radius 16 at sigma 4: wider than 20
    ours = gaussian_blur(maps, sigma, padding).numpy()
    scipy = np.stack([ndimage.gaussian_filter(m.double().numpy(), sigma, mode=padding) for m in maps])
    np.testing.assert_allclose(ours, scipy, atol=2e-7)
    other = "mirror" if padding == "reflect" else "reflect"
    assert not np.allclose(gaussian_blur(maps, sigma, other).numpy(), scipy, atol=1e-4)


# ---------------------------------------------------------------- non-finite scores in evaluation
def test_nan_to_num_replaces_as_the_authors_evaluate_class() -> None:
    image = np.array([np.nan, 2.0, np.inf, -np.inf, 0.5])
    maps = np.full((5, 2, 2), 0.25, dtype=np.float32)
    maps[0, 0, 0], maps[1, 1, 1] = np.inf, np.nan
    fixed, count = nan_to_num(TaskScores(image, maps, {3: image.copy()}))
    assert fixed.image.tolist() == [0.0, 2.0, 1.0, 0.0, 0.5] and fixed.by_top_k[3].tolist() == fixed.image.tolist()
    assert fixed.maps is not None and (fixed.maps[0, 0, 0], fixed.maps[1, 1, 1]) == (1.0, 0.0) and count == 3 + 2 + 3
    labels, masks = np.array([1, 0, 1, 0, 1]), np.zeros((5, 2, 2), dtype=bool)
    masks[0, 0, 0] = masks[2, 1, 1] = True
    assert all(v is not None and np.isnan(v) for v in metrics_of(labels, masks, TaskScores(image, maps), 0.3).values())
    # positives 0.0, 1.0, 0.5 against negatives 2.0, 0.0: 2.5 of 6 pairs ordered (a tie counts a half)
    assert metrics_of(labels, masks, fixed, 0.3)["image_auroc"] == pytest.approx(2.5 / 6)


@pytest.mark.parametrize("mode", ["diverged", "nan_to_num"])
def test_a_nan_patch_score_is_diverged_or_replaced(
    dataset: Path, cache: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    config = authors(dataset, cache, f"evaluation.nonfinite_scores={mode}")
    tasks = _tasks(config)
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    _train(learner, tasks, 0, config)
    real = learner.patch_scores

    def broken(task: int, x: torch.Tensor) -> torch.Tensor:
        out = real(task, x)
        out[0, 0, 0] = float("nan")  # the first image of every chunk
        return out

    monkeypatch.setattr(learner, "patch_scores", broken)
    ev = evaluate_task(learner, 0, tasks[0], ScoreSettings.from_config(config), CPU)
    if mode == "diverged":
        assert all(v is not None and np.isnan(v) for v in ev.oracle.values()) and ev.replaced == 0
    else:
        assert all(v is not None and np.isfinite(v) for v in ev.oracle.values()) and ev.replaced > 0
        assert ev.routed_scores.image[0] == 0.0


# ---------------------------------------------------------------- task 0's gamma, the router prototype
def test_task_0s_gamma_starts_where_the_authors_logit_puts_it() -> None:
    wa = WhiteningAdapter(4)
    wa.add_task(0, defaults()["model"]["gamma_init_first"])
    assert torch.equal(wa.g["0"], torch.full((4,), -0.7))  # their gamma_raw = -0.7, bit for bit in float32


def test_the_router_prototype_is_the_authors_drop_last_float32_one(dataset: Path, cache: Path) -> None:
    rows = prototype_rows(9, 4, seed=0, task=0)
    assert len(rows) == 8 and len(set(rows.tolist())) == 8 and list(rows) == sorted(rows)
    assert len(prototype_rows(3, 4, 0, 0)) == 3  # fewer images than a batch: all of them
    config = authors(dataset, cache)
    feats = np.random.default_rng(0).normal(size=(9, 16)).astype(np.float32)
    learner = Learner.from_config(config, 16)
    learner.add_task(feats)
    kept = torch.from_numpy(feats[prototype_rows(9, config["training"]["batch_size"], config["seed"], 0)])
    mean = kept.mean(dim=0)
    cov = (kept - mean).T @ (kept - mean) / 7 + 1e-5 * torch.eye(16)
    stored = learner.router.state_dict()
    assert stored["mean_0"].dtype == torch.float32 and torch.equal(stored["mean_0"], mean)
    assert torch.equal(stored["precision_0"], torch.linalg.inv(cov))
    every = Learner.from_config(authors(dataset, cache, "router.prototype_images=all", "router.precision=float64"), 16)
    every.add_task(feats)
    mean64 = every.router.state_dict()["mean_0"].numpy()
    np.testing.assert_allclose(mean64, feats.astype(np.float64).mean(axis=0), rtol=1e-12)


# ---------------------------------------------------------------- their baselines script's EWC
def test_batch_fisher_is_the_batches_squared_gradients_times_their_size(dataset: Path, cache: Path) -> None:
    config = authors(dataset, cache, "strategy.name=ewc", "strategy.ewc_fisher=batch", "strategy.ewc_fisher_images=5")
    tasks = _tasks(config)
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    _train(learner, tasks, 0, config)
    settings = TrainSettings.from_config(config)
    fisher = empirical_fisher(learner, 0, tasks[0].train.patches, settings, CPU)
    # by hand: whole shuffled batches of 4 until at least 5 images (two batches, 8 images)
    order = np.random.default_rng([settings.seed, 0, 0xF15]).permutation(9)
    named = learner.base_named_parameters(0)
    expected = {n: torch.zeros_like(p) for n, p in named.items()}
    for batch in (order[:4], order[4:8]):
        for p in named.values():
            p.requires_grad_(True)
            p.grad = None
        x = torch.from_numpy(np.asarray(tasks[0].train.patches[np.sort(batch)], dtype=np.float32))
        out = learner.flow(0)(x, 0)
        settings.loss()(-out.log_prob, out.logdet_flow + out.logdet_dia)[0].backward()
        for n, p in named.items():
            assert p.grad is not None
            expected[n] += p.grad**2 * 4
    assert set(fisher) == set(expected)
    for n in expected:
        torch.testing.assert_close(fisher[n], expected[n] / 8, rtol=1e-5, atol=1e-12)


def test_image_top_k_0_scores_every_patch_as_the_sum_ranks_them() -> None:
    scores = torch.rand(5, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(image_scores(scores, 0), scores.mean(dim=(1, 2)))
    assert torch.equal(image_scores(scores, 0).argsort(), scores.sum(dim=(1, 2)).argsort())
