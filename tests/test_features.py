"""Patch embedding, the offline backbone, and the feature cache (hit, miss, invalidation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import make_mvtec, save

from moleflow.cli import main
from moleflow.config import load_config
from moleflow.features import FeatureExtractor, FeatureStore, PatchEmbedder
from moleflow.features.cache import is_complete


def _reference_layer(fmap: torch.Tensor, size: tuple[int, int], dim: int) -> torch.Tensor:
    """The reference order: unfold 3x3, resize to the first grid, then pool each C*9 vector."""
    b, c, h, w = fmap.shape
    unfolded = F.unfold(fmap, 3, padding=1).reshape(b, c * 9, h, w)
    unfolded = F.interpolate(unfolded, size=size, mode="bilinear", align_corners=False)
    vectors = unfolded.permute(0, 2, 3, 1).reshape(-1, 1, c * 9)
    return F.adaptive_avg_pool1d(vectors, dim).reshape(b, *size, dim)


def test_embedding_matches_the_method_notes_order() -> None:
    torch.manual_seed(0)
    maps = [torch.randn(2, 32, 16, 16), torch.randn(2, 64, 8, 8)]
    patches, router = PatchEmbedder(embed_dim=40)(maps)
    expected = (_reference_layer(maps[0], (16, 16), 40) + _reference_layer(maps[1], (16, 16), 40)) / 2
    assert patches.shape == (2, 16, 16, 40)
    torch.testing.assert_close(patches, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(router, patches.mean(dim=(1, 2)))


def test_concat_pool_and_grid() -> None:
    maps = [torch.randn(1, 32, 16, 16), torch.randn(1, 64, 8, 8)]
    patches, _ = PatchEmbedder(embed_dim=20, fusion="concat_pool", grid=8)(maps)
    assert patches.shape == (1, 8, 8, 20)
    per_layer = [_reference_layer(m, (16, 16), 20) for m in maps]
    joined = F.adaptive_avg_pool1d(torch.cat(per_layer, -1).reshape(-1, 1, 40), 20).reshape(1, 16, 16, 20)
    pooled = F.adaptive_avg_pool2d(joined.permute(0, 3, 1, 2), 8).permute(0, 2, 3, 1)
    torch.testing.assert_close(patches, pooled, rtol=0, atol=1e-5)


def _config(root: Path, cache: Path, *extra: str) -> dict:
    return load_config(
        overrides=[
            f"dataset.root={root}",
            f"features.cache_dir={cache}",
            "features.backbone=resnet18",
            "features.pretrained=false",
            "features.embed_dim=32",
            "features.resize=40",
            "features.input_size=32",
            "features.batch_size=3",
            "device=cpu",
            *extra,
        ]
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_mvtec(tmp_path / "data", {"bottle": False, "screw": True}, size=40)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_cache_hit_returns_identical_memmap_of_the_configured_precision(tree: Path, tmp_path: Path, dtype: str) -> None:
    config = _config(tree, tmp_path / "cache", f"features.cache_dtype={dtype}")
    first = FeatureStore(config, progress=False)
    test = first.get("bottle", "test")
    assert first.stats["misses"] == 1 and first.stats["images_extracted"] == 6
    assert test.patches.dtype == np.dtype(dtype) and isinstance(test.patches, np.memmap)
    assert test.masks is not None
    assert test.patches.shape == (6, 4, 4, 32) and test.masks.shape == (6, 32, 32)
    assert test.labels.tolist() == [1, 1, 0, 0, 1, 1]  # crack, good, hole (sorted folders)
    assert test.masks[test.labels == 1].any(axis=(1, 2)).all() and not test.masks[test.labels == 0].any()
    again = FeatureStore(config, progress=False)
    cached = again.get("bottle", "test")
    assert again.stats == {"hits": 1, "misses": 0, "images_extracted": 0, "extract_seconds": 0.0}
    assert cached.path == test.path and np.array_equal(cached.patches, test.patches)
    assert again._extractor is None  # a fully cached run never builds the backbone


def test_features_equal_a_direct_backbone_pass(tree: Path, tmp_path: Path) -> None:
    """The cached features equal a plain timm forward of the image, embedded as written out here.

    Independent of the store's extractor: PIL resize (Lanczos) and centre crop, ImageNet normalisation
    (resnet18's), ``timm.create_model`` under the configured init seed, the layers by name, and the
    embedding in the reference order (unfold 3x3, resize to the finest grid, pool each vector, average).
    """
    from PIL import Image

    config = _config(tree, tmp_path / "cache")
    train = FeatureStore(config, progress=False).get("screw", "train")
    image = (
        Image.open(tree / "screw" / "train" / "good" / "002.png")
        .convert("RGB")
        .resize((40, 40), Image.Resampling.LANCZOS)
    )
    pixels = np.asarray(image.crop((4, 4, 36, 36)), dtype=np.float32) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406], dtype=np.float32), np.array([0.229, 0.224, 0.225], dtype=np.float32)
    pixels = np.divide(pixels - mean, std, dtype=np.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # features.init_seed
        backbone: Any = timm.create_model("resnet18", pretrained=False).eval()  # timm's ResNet, its stages by name
    x = torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        x = backbone.maxpool(backbone.act1(backbone.bn1(backbone.conv1(x))))
        layer2 = backbone.layer2(backbone.layer1(x))
        layer3 = backbone.layer3(layer2)
    grid = tuple(layer2.shape[-2:])
    expected = (_reference_layer(layer2, grid, 32) + _reference_layer(layer3, grid, 32)) / 2
    np.testing.assert_allclose(
        train.patches[2].astype(np.float32), expected[0].numpy(), rtol=1e-3, atol=1e-4
    )  # float16 storage
    np.testing.assert_allclose(train.router[2], expected[0].mean(dim=(0, 1)).numpy(), rtol=1e-4, atol=1e-5)


def test_changed_setting_or_file_gives_a_new_entry(tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    base = FeatureStore(_config(tree, cache), progress=False).entry_path("bottle", "train")[0]
    for extra in (
        "features.embed_dim=16",
        "features.input_size=24",
        "features.layers=[layer1,layer2]",
        "features.fusion=concat_pool",
        "features.grid=2",
        "features.backbone=resnet34",
        "features.init_seed=1",
    ):
        assert FeatureStore(_config(tree, cache, extra), progress=False).entry_path("bottle", "train")[0] != base, extra
    assert FeatureStore(_config(tree, cache), progress=False).entry_path("bottle", "test")[0] != base
    store = FeatureStore(_config(tree, cache), progress=False)
    store.get("bottle", "train")
    save(tree / "bottle" / "train" / "good" / "001.png", np.zeros((40, 40, 3), dtype=np.uint8))
    changed = FeatureStore(_config(tree, cache), progress=False)
    assert changed.entry_path("bottle", "train")[0] != base
    changed.get("bottle", "train")
    assert changed.stats["misses"] == 1


def test_half_written_entry_is_never_read(tree: Path, tmp_path: Path) -> None:
    config = _config(tree, tmp_path / "cache")
    store = FeatureStore(config, progress=False)
    path = store.entry_path("bottle", "train")[0]
    path.mkdir(parents=True)
    np.save(path / "patches.npy", np.zeros((1, 1), dtype=np.float16))  # debris of an interrupted copy
    assert not is_complete(path)
    features = store.get("bottle", "train")
    assert store.stats["misses"] == 1 and features.patches.shape == (4, 4, 4, 32)


def test_interrupted_extraction_leaves_no_entry(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(tree, tmp_path / "cache")
    store = FeatureStore(config, progress=False)
    calls = {"n": 0}
    original = FeatureExtractor.__call__

    def failing(self, images):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, images)

    monkeypatch.setattr(FeatureExtractor, "__call__", failing)
    with pytest.raises(KeyboardInterrupt):
        store.get("bottle", "train")
    path = store.entry_path("bottle", "train")[0]
    assert not path.exists() and not list(path.parent.glob(f".{path.name}*"))


def test_pretrained_without_weights_fails_fast_with_one_line(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-torch"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    code = main(
        [
            "features",
            "extract",
            "--root",
            str(tree),
            "--set",
            "features.backbone=resnet18",
            "--set",
            f"features.cache_dir={tmp_path / 'c'}",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "not on this machine" in err and "features.weights" in err
    code = main(
        [
            "features",
            "extract",
            "--root",
            str(tree),
            "--set",
            "features.weights=/nope/w.pth",
            "--set",
            f"features.cache_dir={tmp_path / 'c'}",
            "--quiet",
        ]
    )
    assert code == 2 and "features.weights: file not found: /nope/w.pth" in capsys.readouterr().err


def test_local_weights_file_is_used(tree: Path, tmp_path: Path) -> None:
    torch.manual_seed(123)
    weights = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), weights)
    config = _config(tree, tmp_path / "cache", "features.pretrained=true", f"features.weights={weights}")
    with_weights = FeatureStore(config, progress=False).get("bottle", "train")
    random_init = FeatureStore(_config(tree, tmp_path / "cache"), progress=False).get("bottle", "train")
    assert with_weights.path != random_init.path
    assert with_weights.meta["key"]["weights"] is not None
    reference = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(2, 3)).eval()
    loaded = reference.load_state_dict(
        {k: v for k, v in torch.load(weights).items() if not k.startswith("fc.")}, strict=False
    )
    # the feature extractor stops at layer3: only layer4's tensors are left over, none is missing
    assert not loaded.missing_keys and {k.split(".")[0] for k in loaded.unexpected_keys} == {"layer4"}
    extractor = FeatureExtractor.from_config(config)
    ours, theirs = extractor.backbone.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs) and len(ours) > 20
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name
    fresh = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(2, 3)).state_dict()
    assert not torch.equal(fresh["conv1.weight"], ours["conv1.weight"])  # the file's weights, not a random init


def test_cli_extract_then_hit(tree: Path, tmp_path: Path, capsys) -> None:
    argv = [
        "features",
        "extract",
        "--dataset",
        "mvtec",
        "--root",
        str(tree),
        "--categories",
        "screw",
        "--quiet",
        "--set",
        "features.backbone=resnet18",
        "--set",
        "features.pretrained=false",
        "--set",
        "features.input_size=32",
        "--set",
        "features.resize=32",
        "--set",
        "features.embed_dim=16",
        "--set",
        f"features.cache_dir={tmp_path / 'c'}",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "screw/train: 4 images" in out and "extracted" in out and "img/s" in out
    assert main(argv) == 0
    assert "cache: 2 hits, 0 misses" in capsys.readouterr().out


def test_extract_also_other_feature_settings_in_one_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What the workflow's feature job does for a study at another resolution: both entries in one process."""
    import json

    from moleflow.cli import main
    from moleflow.config import load_config, load_profile
    from moleflow.data.synth import SynthCounts, generate

    root = tmp_path / "data"
    generate(root, seed=0, size=64, categories=["cap"], counts=SynthCounts(train=2, test_good=1, test_per_defect=1))
    cache = tmp_path / "cache"
    sets = [
        f"dataset.root={root}",
        f"features.cache_dir={cache}",
        "features.resize=64",
        "features.input_size=64",
        "features.embed_dim=16",
        "device=cpu",
    ]
    other = load_config(None, [*sets, "features.resize=32", "features.input_size=32"], base=load_profile("cpu"))[
        "features"
    ]
    args = [
        "features",
        "extract",
        "--profile",
        "cpu",
        "--quiet",
        *[a for s in sets for a in ("--set", s)],
        "--also-features",
        json.dumps([other]),
        "--record",
        str(tmp_path / "record.json"),
    ]
    assert main(args) == 0
    record = json.loads((tmp_path / "record.json").read_text())
    assert len(record["entries"]) == 4 and record["stats"]["misses"] == 4  # 2 settings x train/test
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) >= 4
    capsys.readouterr()
    assert main([*args[:-2]]) == 0 and "cache: 4 hits, 0 misses" in capsys.readouterr().out
    assert main(["features", "extract", "--profile", "cpu", "--also-features", "{bad"]) == 2
    assert capsys.readouterr().err.startswith("moleflow: error: --also-features is not valid JSON")


#: feature settings that cannot change the cached numbers: how many images per pass, decoding workers, where the
#: cache lives; ``weights`` enters as the weights file's identity (``weights_id``), not as its path
NOT_IN_CACHE_KEY = {"batch_size", "num_workers", "cache_dir", "weights"}


#: every other feature setting, with a value other than the default: each changes the cached numbers
KEYED = [
    ("backbone", "resnet18"),
    ("pretrained", False),
    ("layers", ["layer1", "layer2"]),
    ("aggregation", 5),
    ("embed_dim", 128),
    ("fusion", "concat_pool"),
    ("grid", 14),
    ("resize", 256),
    ("resize_mode", "square"),
    ("input_size", 192),
    ("cache_dtype", "float16"),
]


def test_every_feature_setting_is_keyed_or_listed_as_one_that_cannot_change_the_numbers() -> None:
    from moleflow.config import schema

    settings = set(schema()["properties"]["features"]["properties"])
    assert settings == {k for k, _ in KEYED} | NOT_IN_CACHE_KEY | {"init_seed"}


@pytest.mark.parametrize(("key", "other"), KEYED)
def test_every_feature_setting_that_changes_the_numbers_changes_the_cache_key(key: str, other: object) -> None:
    from moleflow.config import defaults
    from moleflow.features.cache import cache_fields, entry_key

    config = defaults()
    base = entry_key(cache_fields(config, "f", "cap", "train", None))
    changed = {**config, "features": {**config["features"], key: other}}
    assert entry_key(cache_fields(changed, "f", "cap", "train", None)) != base, key


def test_the_random_init_seed_is_keyed_only_without_pretrained_weights() -> None:
    from moleflow.config import defaults
    from moleflow.features.cache import cache_fields, entry_key

    config = defaults()
    random = {**config, "features": {**config["features"], "pretrained": False}}
    key = lambda c: entry_key(cache_fields(c, "f", "cap", "train", None))  # noqa: E731
    reseeded = lambda c: {**c, "features": {**c["features"], "init_seed": 7}}  # noqa: E731
    assert key(reseeded(random)) != key(random) and key(reseeded(config)) == key(config)
    for setting in NOT_IN_CACHE_KEY - {"weights"}:
        value = {"batch_size": 3, "num_workers": 2, "cache_dir": "elsewhere"}[setting]
        assert key({**config, "features": {**config["features"], setting: value}}) == key(config), setting
