"""MoLE-Flow torch modules (pure: tensors in, tensors out; no I/O, no logging)."""

from moleflow.model.adapters import PositionalEncoding2D, SpatialContextMixer, WhiteningAdapter, positional_encoding_2d
from moleflow.model.coupling import GridShape, MoLEContextSubnet, SubnetConfig, build_coupling_flow
from moleflow.model.dia import AffineCouplingBlock, DeepInvertibleAdapter
from moleflow.model.gaussian_memory import GaussianMemory
from moleflow.model.knn import NearestNeighbourScorer, greedy_coreset
from moleflow.model.lora import LoRALinear
from moleflow.model.loss import TailAwareLoss
from moleflow.model.mole_flow import FlowOutput, ModelConfig, MoLEFlow, task_of_parameter
from moleflow.model.router import MahalanobisRouter
from moleflow.model.scoring import anomaly_maps, gaussian_blur, image_scores

__all__ = [
    "AffineCouplingBlock",
    "DeepInvertibleAdapter",
    "FlowOutput",
    "GaussianMemory",
    "GridShape",
    "LoRALinear",
    "MahalanobisRouter",
    "ModelConfig",
    "MoLEContextSubnet",
    "MoLEFlow",
    "NearestNeighbourScorer",
    "PositionalEncoding2D",
    "SpatialContextMixer",
    "SubnetConfig",
    "TailAwareLoss",
    "WhiteningAdapter",
    "anomaly_maps",
    "build_coupling_flow",
    "gaussian_blur",
    "greedy_coreset",
    "image_scores",
    "positional_encoding_2d",
    "task_of_parameter",
]
