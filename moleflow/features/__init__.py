"""Frozen backbone features: timm backbones, the patch embedding, the on-disk cache."""

from moleflow.features.cache import FeatureSet
from moleflow.features.embedding import PatchEmbedder
from moleflow.features.extract import FeatureExtractor, FeatureStore

__all__ = ["FeatureExtractor", "FeatureSet", "FeatureStore", "PatchEmbedder"]
