"""The authors' other definitions, each a named value: Sequential with frozen linears, Full-Copy with a shared mixer, the joint subnet; the short-side resize; cache keys and saved configurations that predate a key."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tests_helpers import authors, fidelity_synth

from moleflow.config import (
    BEFORE_KEY_EXISTED,
    defaults,
    flat,
    load_profile,
    load_saved_config,
)
from moleflow.continual import Learner
from moleflow.continual.settings import TrainSettings
from moleflow.continual.tasks import load_tasks
from moleflow.continual.train import train_task
from moleflow.data.transforms import load_image, load_mask
from moleflow.features import FeatureStore
from moleflow.features.cache import cache_fields
from moleflow.model import ModelConfig, MoLEFlow, SubnetConfig

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fidelity_synth(tmp_path_factory.mktemp("synth"))


def _after_task0(config: dict) -> tuple[Learner, Callable[[], None]]:
    """A learner trained on task 0 of ``config``, and a function that adds and trains task 1."""
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    settings = TrainSettings.from_config(config)

    def train(task: int) -> None:
        learner.add_task(np.asarray(tasks[task].train.router))
        assert train_task(learner, task, tasks[task].train.patches, settings, CPU).status == "ok"

    train(0)
    return learner, lambda: train(1)


def test_sequential_with_frozen_linears_trains_everything_else(dataset: Path, cache: Path) -> None:
    learner, task1 = _after_task0(
        authors(dataset, cache, "strategy.name=sequential", "strategy.sequential_linears=frozen")
    )
    after0 = {k: v.clone() for k, v in learner.state_dict().items()}
    task1()
    changed = {k for k, v in learner.state_dict().items() if k in after0 and not torch.equal(after0[k], v)}
    assert changed and not any(re.search(r"\.base\.(weight|bias)$", k) for k in changed)
    assert any("context_conv" in k for k in changed) and any(k.endswith("mixer.theta") for k in changed)
    assert any(k.endswith("global_offset") for k in changed)  # their model never froze the global affine


def test_full_copy_with_a_shared_mixer_keeps_task_0s(dataset: Path, cache: Path) -> None:
    learner, task1 = _after_task0(authors(dataset, cache, "strategy.name=separated", "strategy.separated_mixer=shared"))
    first = learner.flow(0)
    assert first.mixer is not None and first.flow is not None
    mixer0 = {k: v.clone() for k, v in first.mixer.state_dict().items()}
    flow0 = {k: v.clone() for k, v in first.flow.state_dict().items()}
    task1()
    assert learner.flow(1).mixer is first.mixer
    assert all(torch.equal(v, first.mixer.state_dict()[k]) for k, v in mixer0.items())
    assert all(torch.equal(v, first.flow.state_dict()[k]) for k, v in flow0.items())
    second = learner.flow(1).flow
    assert second is not None
    moved = second.state_dict()
    assert any(not torch.equal(flow0[k], moved[k]) for k in flow0 if "base" in k)  # task 1 trains its own flow


def test_joint_subnet_has_two_lora_linears_and_needs_no_scale_context() -> None:
    cfg = ModelConfig(dim=16, coupling_blocks=2, subnet=SubnetConfig(rank=4, scale_context=False, joint=True))
    model = MoLEFlow(cfg)
    model.add_task()
    model.add_task()
    lora = [n for n, _ in model.named_parameters() if n.endswith("lora_A.1")]
    assert len(lora) == 2 * 2  # two LoRA linears per subnet, one subnet per block
    # widths D/2 -> D -> D: LoRA (rank x (in + out)) and a task bias (out) per linear
    per_block = 4 * (8 + 16) + 16 + 4 * (16 + 16) + 16
    assert (
        sum(p.numel() for n, p in model.named_parameters() if n.startswith("flow") and n.endswith(".1"))
        == 2 * per_block
    )
    with pytest.raises(ValueError, match="joint subnet has no scale context"):
        MoLEFlow(ModelConfig(dim=16, coupling_blocks=1, subnet=SubnetConfig(rank=4, scale_context=True, joint=True)))


def test_short_side_resize_keeps_the_aspect_then_crops_the_centre(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(200, 300, 3), dtype=np.uint8)  # 300 wide, 200 high
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    mask = np.zeros((200, 300), dtype=np.uint8)
    mask[:, :20] = 255  # a band at the left edge: outside the centre crop
    Image.fromarray(mask).save(tmp_path / "mask.png")
    got = load_image(tmp_path / "wide.png", 64, 64, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), mode="short_side")
    resized = Image.fromarray(pixels).resize((96, 64), Image.Resampling.LANCZOS)
    expected = np.asarray(resized.crop((16, 0, 80, 64)), dtype=np.float32).transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not load_mask(tmp_path / "mask.png", 64, 64, mode="short_side").any()
    assert load_mask(tmp_path / "mask.png", 64, 64, mode="square").any()  # squashed, the band enters the crop


def test_cache_keys_of_earlier_entries_are_unchanged_and_float32_entries_are_float32(
    dataset: Path, cache: Path
) -> None:
    cpu = load_profile("cpu")
    fields = cache_fields(cpu, "fp", "cap", "train", None)
    assert "resize_mode" not in fields and "dtype" not in fields  # square float16 entries keep their keys
    paper = cache_fields(defaults(), "fp", "cap", "train", None)
    assert paper["resize_mode"] == "short_side" and paper["dtype"] == "float32"
    config = authors(dataset, cache)
    store = FeatureStore(config, progress=False)
    assert store.get("cap", "train").patches.dtype == np.float32


def test_a_saved_config_that_predates_a_key_reads_as_what_its_code_did(tmp_path: Path) -> None:
    saved = defaults()
    for key in BEFORE_KEY_EXISTED:  # a run folder written before these keys existed
        section, name = key.split(".")
        saved[section].pop(name)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    loaded = flat(load_saved_config(tmp_path / "config.yaml"))
    assert {k: loaded[k] for k in BEFORE_KEY_EXISTED} == BEFORE_KEY_EXISTED
    assert loaded["model.permutations"] == "fixed"  # the fixed permutations every run had before the key
    (tmp_path / "new.yaml").write_text(yaml.safe_dump(defaults()))
    assert load_saved_config(tmp_path / "new.yaml") == defaults()
