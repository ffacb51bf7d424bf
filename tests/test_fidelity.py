"""The authors' readings: every key where the paper's text and its authors' code differ does what it says.

The schema defaults are the authors' main configuration; the CPU profile pins the values
its selection ran with. These tests run the authors' values (the schema defaults of the
keys below) on a tiny generated dataset, and check each reading against an independent
computation: torch's own schedulers driven the way the authors' trainer drives them, the
sample covariance, PIL's resize, the authors' loop's skip rule.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tests_helpers import FIDELITY_KEYS, authors, fidelity_synth, scores_of_task0_after_each_task

from moleflow.config import (
    BEFORE_KEY_EXISTED,
    defaults,
    flat,
    load_profile,
)
from moleflow.continual import Learner
from moleflow.continual import train as train_module
from moleflow.continual.settings import TrainSettings
from moleflow.continual.strategies import parameter_counts
from moleflow.continual.tasks import load_tasks
from moleflow.continual.train import epoch_lr_factor, make_optimizer, train_task
from moleflow.features import FeatureStore
from moleflow.model import MahalanobisRouter, ModelConfig, MoLEFlow, SpatialContextMixer, SubnetConfig, TailAwareLoss

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fidelity_synth(tmp_path_factory.mktemp("synth"))


def test_the_defaults_are_the_authors_and_the_cpu_profile_keeps_its_selection() -> None:
    d, cpu = flat(defaults()), flat(load_profile("cpu"))
    assert {k: d[k] for k in FIDELITY_KEYS} == {
        "evaluation.nonfinite_scores": "diverged",
        "features.cache_dtype": "float32",
        "features.resize_mode": "short_side",
        "model.gamma_init_first": 0.9977183417,
        "model.global_affine": "frozen",
        "model.mixer_bias": True,
        "model.permutations": "seed",
        "model.subnet": "split",
        "model.whitening_fallback": "identity",
        "router.covariance": "ridge",
        "router.precision": "float32",
        "router.prototype_images": "drop_last",
        "scoring.map_padding": "reflect",
        "strategy.ewc_fisher": "per_image",
        "strategy.ewc_fisher_images": None,
        "strategy.separated_adapters": "first",
        "strategy.separated_global_affine": "model",
        "strategy.separated_mixer": "own",
        "strategy.sequential_adapter_updates": "once",
        "strategy.sequential_linears": "trained",
        "training.drop_last": True,
        "training.loss_ceiling": 1e8,
        "training.lr_schedule": "epoch",
        "training.max_skipped_share": 0.05,
        "training.nonfinite": "skip",
        "training.optimizer": "adamp",
        "training.tail_k_rounding": "floor",
        "training.weight_decay": 0.01,
    }
    # the CPU profile keeps the values its selection ran with: the behaviour before these keys existed, but for
    # the permutations, which follow the seed there too (the replicates' spread must contain their variance)
    assert {k: cpu[k] for k in BEFORE_KEY_EXISTED} == {**BEFORE_KEY_EXISTED, "model.permutations": "seed"}
    assert cpu["router.covariance"] == "ledoit_wolf" and cpu["training.weight_decay"] == 1e-4
    assert cpu["model.gamma_init_first"] == 1.0  # as selected; the authors' 0.9977 is the schema's
    assert d["model.gamma_init_first"] == pytest.approx(0.5 + 1.5 / (1.0 + np.exp(0.7)), abs=1e-10)


def test_docs_fidelity_table_states_the_schema_defaults() -> None:
    """Each row of docs/method.md's fidelity table names a key and its default; both must be the schema's."""
    text = (Path(__file__).parents[1] / "docs" / "method.md").read_text(encoding="utf-8")
    table = text.split("<!-- fidelity:start -->")[1].split("<!-- fidelity:end -->")[0]
    d = flat(defaults())
    found = re.findall(r"`([a-z_]+\.[a-z_.]+): ([^`]+)`", table)
    assert len(found) >= 15
    for key, value in found:
        assert key in d, f"docs/method.md fidelity table: unknown key {key}"
        if value.startswith("("):  # "(a named value)": a reading, not the default
            continue
        assert d[key] == yaml.safe_load(value), (
            f"docs/method.md fidelity table: {key} default is {d[key]!r}, not {value}"
        )


@pytest.mark.parametrize("warmup", [0, 2])
def test_epoch_schedule_is_torchs_cosine_driven_as_the_authors_trainer_drives_it(warmup: int) -> None:
    epochs, lr = 7, 3e-4
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=lr * 0.01)
    expected = []
    for epoch in range(epochs):  # the authors' loop: warm-up sets the lr by hand, the cosine steps after it
        if epoch < warmup:
            for group in opt.param_groups:
                group["lr"] = lr * (epoch + 1) / warmup
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        if epoch >= warmup:
            sched.step()
    ours = [lr * epoch_lr_factor(e, epochs, warmup, 0.01) for e in range(epochs)]
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_training_uses_adamp_and_changes_the_lr_once_per_epoch(
    dataset: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adamp import AdamP

    config = authors(dataset, cache)
    settings = TrainSettings.from_config(config)
    seen: list[tuple[type, float]] = []

    def recording(params, s):
        opt = make_optimizer(params, s)
        opt.register_step_pre_hook(lambda o, args, kwargs: seen.append((type(o), o.param_groups[0]["lr"])))
        group = opt.param_groups[0]
        assert (group["weight_decay"], group["delta"], group["wd_ratio"], group["betas"]) == (
            0.01,
            0.1,
            0.1,
            (0.9, 0.999),
        )
        return opt

    monkeypatch.setattr(train_module, "make_optimizer", recording)
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    for task in (0, 1):
        seen.clear()
        learner.add_task(np.asarray(tasks[task].train.router))
        result = train_task(learner, task, tasks[task].train.patches, settings, CPU)
        # 9 training images in batches of 4, the last one dropped: 2 steps per epoch
        assert result.status == "ok" and result.steps == 2 * settings.epochs and result.skipped == 0
        assert {kind for kind, _ in seen} == {AdamP}
        lrs = [lr for _, lr in seen]
        warmup = settings.warmup_epochs if task else 0
        assert lrs == [
            settings.lr * epoch_lr_factor(e, settings.epochs, warmup, settings.lr_min_ratio)
            for e in range(settings.epochs)
            for _ in range(2)
        ]


def test_steps_per_epoch_with_and_without_drop_last() -> None:
    base = TrainSettings.from_config(load_profile("cpu"))
    keep, drop = (TrainSettings(**{**base.__dict__, "batch_size": 4, "drop_last": flag}) for flag in (False, True))
    assert (keep.steps_per_epoch(10), drop.steps_per_epoch(10)) == (3, 2)
    assert (keep.steps_per_epoch(3), drop.steps_per_epoch(3)) == (1, 1)  # fewer images than a batch still train


def _nan_on(calls: set[int], monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the training objective NaN on the given call numbers; return the call counter."""
    real, count = train_module._objective, [0]

    def objective(*args, **kwargs):
        count[0] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if count[0] in calls else loss

    monkeypatch.setattr(train_module, "_objective", objective)
    return count


def test_a_non_finite_batch_is_skipped_counted_and_leaves_the_parameters(
    dataset: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = authors(dataset, cache, "training.max_skipped_share=0.2")
    settings = TrainSettings.from_config(config)
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    learner.add_task(np.asarray(tasks[0].train.router))
    _nan_on({1}, monkeypatch)
    result = train_task(learner, 0, tasks[0].train.patches, settings, CPU)
    assert result.status == "ok" and result.skipped == 1 and result.steps == 2 * settings.epochs - 1
    assert all(loss is not None and np.isfinite(loss) for loss in result.epoch_losses)
    # more than the allowed share: diverged, with the count in the message
    _nan_on({1, 2}, monkeypatch)
    learner2 = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    learner2.add_task(np.asarray(tasks[0].train.router))
    tight = TrainSettings(**{**settings.__dict__, "max_skipped_share": 0.1})
    result = train_task(learner2, 0, tasks[0].train.patches, tight, CPU)
    assert result.status == "diverged" and "skipped 2 of its 6 batches" in result.message


def test_skipping_a_batch_is_the_same_as_never_drawing_its_update(
    dataset: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A skipped first batch leaves the parameters untouched: the first update comes from the second batch."""
    config = authors(dataset, cache, "training.epochs=1", "training.max_skipped_share=1.0")
    settings = TrainSettings.from_config(config)
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    learner.add_task(np.asarray(tasks[0].train.router))
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    _nan_on({1, 2}, monkeypatch)  # both batches of the only epoch
    result = train_task(learner, 0, tasks[0].train.patches, settings, CPU)
    assert result.skipped == 2 and result.steps == 0 and result.epoch_losses == [None]
    assert all(torch.equal(before[k], v) for k, v in learner.state_dict().items())


def test_stop_ends_the_run_at_the_first_non_finite_loss(
    dataset: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = authors(dataset, cache, "training.nonfinite=stop")
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    learner.add_task(np.asarray(tasks[0].train.router))
    _nan_on({3}, monkeypatch)
    result = train_task(learner, 0, tasks[0].train.patches, TrainSettings.from_config(config), CPU)
    assert result.status == "diverged" and result.message == "non-finite loss at task 0, epoch 1, step 0"


def test_a_loss_above_the_ceiling_is_skipped(dataset: Path, cache: Path) -> None:
    config = authors(dataset, cache, "training.loss_ceiling=1.0e-9")  # every loss is above it
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    learner.add_task(np.asarray(tasks[0].train.router))
    result = train_task(learner, 0, tasks[0].train.patches, TrainSettings.from_config(config), CPU)
    assert result.status == "diverged" and (result.skipped, result.steps) == (6, 0)


@pytest.mark.parametrize(
    "variant",
    [
        [],
        ["model.whitening=false", "model.whitening_fallback=film"],
        ["model.whitening=false", "model.whitening_fallback=soft_ln"],
        ["model.scale_context=false", "model.subnet=joint"],
    ],
)
def test_the_authors_configuration_forgets_nothing_bitwise(dataset: Path, cache: Path, variant: list[str]) -> None:
    scores, learner = scores_of_task0_after_each_task(authors(dataset, cache, *variant))
    assert np.array_equal(scores[0], scores[1])
    model = learner.flow(0)
    if model.film is not None:  # per-task FiLM adapters stand where the whitening adapter was
        assert sorted(model.film.tasks) == ["0", "1"] and model.whitening is None
        assert {n.split(".")[2] for n, _ in model.named_parameters() if n.startswith("film.")} == {"0", "1"}


def test_frozen_global_affine_stays_at_its_initialisation_and_is_not_counted(dataset: Path, cache: Path) -> None:
    frozen, learner = scores_of_task0_after_each_task(authors(dataset, cache))
    blocks = [m for m in learner.flow(0).flow.modules() if hasattr(m, "global_scale")]
    assert len(blocks) == 2
    for block in blocks:  # scale 1 (softplus of the stored value) and offset 0, as FrEIA initialises them
        torch.testing.assert_close(
            block.global_scale_activation(block.global_scale), torch.ones_like(block.global_scale)
        )
        assert torch.equal(block.global_offset, torch.zeros_like(block.global_offset))
    trained, learner2 = scores_of_task0_after_each_task(authors(dataset, cache, "model.global_affine=trained"))
    assert any(
        not torch.equal(b.global_offset, torch.zeros_like(b.global_offset))
        for b in learner2.flow(0).flow.modules()
        if hasattr(b, "global_offset")
    )
    counts = [
        parameter_counts(authors(dataset, cache, f"model.global_affine={g}"), 16)["base"] for g in ("frozen", "trained")
    ]
    assert counts[1] - counts[0] == 2 * 2 * 16  # two blocks, a scale and an offset per channel


def test_mixer_bias_is_zero_initialised_and_trained_with_the_base() -> None:
    mixer = SpatialContextMixer(8, 3, 0.5, bias=True)
    plain = SpatialContextMixer(8, 3, 0.5, bias=False)
    x = torch.randn(2, 5, 5, 8)
    assert mixer.conv.bias is not None
    assert torch.equal(mixer.conv.bias, torch.zeros(8)) and torch.equal(mixer(x), plain(x))
    model = MoLEFlow(ModelConfig(dim=8, coupling_blocks=1, mixer_bias=True, subnet=SubnetConfig(rank=2)))
    assert model.mixer is not None
    assert any(p is model.mixer.conv.bias for p in model.base_parameters())


def test_tail_k_rounds_down_as_the_authors_or_up() -> None:
    floor, ceil = (
        TailAwareLoss(top_k_ratio=0.02, k_rounding="floor"),
        TailAwareLoss(top_k_ratio=0.02, k_rounding="ceil"),
    )
    assert (floor.tail_k(784), ceil.tail_k(784)) == (15, 16)  # the paper's 28 x 28 grid
    assert (floor.tail_k(400), ceil.tail_k(400)) == (8, 8)
    assert (floor.tail_k(256), ceil.tail_k(256)) == (5, 6)  # the reduced studies' 16 x 16 grid: 5.12 (round: 5)
    assert (floor.tail_k(10), ceil.tail_k(10)) == (1, 1)  # at least one patch
    nll = torch.arange(784.0).reshape(1, 28, 28)
    loss, parts = TailAwareLoss(tail_weight=1.0, top_k_ratio=0.02, logdet_reg=0.0, k_rounding="floor")(
        nll, torch.zeros_like(nll)
    )
    assert float(parts["tail"]) == float(torch.arange(769.0, 784.0).mean())


def test_ridge_router_is_the_sample_covariance_plus_ridge() -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(30, 6))
    router = MahalanobisRouter("ridge", 1e-5)
    router.add_task(feats)
    expected = np.linalg.inv(np.cov(feats, rowvar=False, ddof=1) + 1e-5 * np.eye(6))
    np.testing.assert_allclose(router.state_dict()["precision_0"].numpy(), expected, rtol=1e-10)
