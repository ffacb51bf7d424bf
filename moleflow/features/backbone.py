"""Frozen timm backbones, created offline.

``create_backbone`` builds any timm CNN with ``features_only=True`` returning the
requested layers. Nothing is ever downloaded: ``pretrained: false`` gives random
weights; ``pretrained: true`` loads the weights that a package from the index
installed (``weights: package``, :mod:`moleflow.features.packaged`: the embedded
default's EfficientNet-Lite0), a local weights file (``weights: PATH``) or the file
already in timm's caches (Hugging Face hub cache or torch hub cache), and fails at
once with a :class:`WeightsError` that says how to provide the weights when none exists.

:func:`normalization` gives the mean and standard deviation the backbone was trained
with, from timm's pretrained configuration of that model (never one ImageNet mean for
every backbone).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from moleflow.errors import ConfigError, WeightsError
from moleflow.features.packaged import load_packaged, packaged_weights_file

#: ``features.weights`` value that selects the weights a package installed.
PACKAGE = "package"

_HF_FILENAMES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _cached_hf_file(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with timm
        return None
    for filename in _HF_FILENAMES:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def _cached_url_file(url: str) -> Path | None:
    candidate = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    return candidate if candidate.is_file() else None


def resolve_weights(name: str, weights: str | None) -> Path:
    """Return the local file holding pretrained weights for timm model ``name``.

    Raises:
        WeightsError: the file does not exist locally (with what to do about it).
    """
    if weights == PACKAGE:
        return packaged_weights_file(name)
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"features.weights: file not found: {path}")
        return path
    import timm  # imported where needed: a run served from the feature cache never loads it (2.5 s)

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - timm raises several types for unknown tags
        cfg = None
    if cfg is None:
        raise WeightsError(f"features.backbone: timm has no pretrained weights named {name!r}")
    url = cfg.url[0] if isinstance(cfg.url, tuple) else cfg.url  # timm may give (url, file name)
    found = (_cached_hf_file(cfg.hf_hub_id) if cfg.hf_hub_id else None) or (_cached_url_file(url) if url else None)
    if found is None:
        source = f"hf-hub:{cfg.hf_hub_id}" if cfg.hf_hub_id else cfg.url
        raise WeightsError(
            f"pretrained weights for {name!r} are not on this machine: download them once where there is a network "
            f"(python -c \"import timm; timm.create_model('{name}', pretrained=True)\", from {source}) "
            "or set features.weights: /path/to/weights.{pth,safetensors}"
        )
    return found


def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    """Blake2b digest of a file's bytes (hex, 32 characters)."""
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def layer_indices(model_name: str, layers: list[str]) -> list[int]:
    """Map layer names (``layer2``) to timm ``out_indices`` of ``model_name``."""
    import timm

    probe = timm.create_model(model_name, pretrained=False, features_only=True)
    names = probe.feature_info.module_name()  # type: ignore[union-attr,operator]  # timm's FeatureListNet attribute
    indices = []
    for layer in layers:
        if layer not in names:
            raise ConfigError(f"features.layers: {layer!r} is not a feature layer of {model_name}; choose from {names}")
        indices.append(names.index(layer))
    return indices


def create_backbone(
    name: str, layers: list[str], pretrained: bool, weights: str | None = None, init_seed: int = 0
) -> nn.Module:
    """Create a frozen timm backbone in eval mode returning ``layers``.

    With ``pretrained=False`` the random initialisation is drawn from ``init_seed``
    (without touching the global RNG), so the same settings give the same
    backbone in every process: the feature cache relies on it.

    Returns:
        A module mapping ``(B, 3, S, S)`` images to a list of ``(B, C_l, h_l, w_l)`` maps.
    """
    import timm

    if name.split(".")[0] not in timm.list_models():
        raise ConfigError(f"features.backbone: unknown timm model {name!r}")
    out_indices = layer_indices(name.split(".")[0], layers)
    if pretrained and weights == PACKAGE:
        model = timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices)
        load_packaged(model, name)
    elif pretrained:
        path = resolve_weights(name, weights)
        try:
            model = timm.create_model(
                name,
                pretrained=True,
                features_only=True,
                out_indices=out_indices,
                pretrained_cfg_overlay={"file": str(path)},
            )
        except Exception as exc:  # noqa: BLE001 - torch/safetensors/pickle raise many types for a bad file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsError(
                f"features.weights: {path} is not a readable weights file for {name} ({first})"
            ) from None
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            model = timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per RGB channel that timm's pretrained configuration of ``name`` gives.

    ``tf_efficientnet_lite0``: ``(0.5, 0.5, 0.5)`` both; ``wide_resnet50_2``, ``resnet18``:
    the ImageNet statistics. A model timm has no pretrained configuration for falls back
    to the ImageNet statistics (timm's own default).
    """
    import timm
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - unknown tags raise several types
        cfg = None
    if cfg is None:
        return tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD)
    return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)
