"""The physical limit: FLOPs per image and per training step against the measured throughput.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and
convolutions, forward and backward; a grouped convolution's backward counted per group,
:func:`benchmarks.common.count_flops`); the achieved rate is FLOPs / measured time; the
limit is the rate of a large float32 matrix product measured in the same process on
the same device (what the BLAS reaches here, not a datasheet number).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch

from benchmarks.common import Result, count_flops, device, median_seconds, synced
from benchmarks.flow_step import mole_step
from moleflow.config import load_config, load_profile
from moleflow.features import FeatureExtractor

SIZES: dict[str, dict[str, Any]] = {
    "smoke": {
        "matmul": 256,
        "backbones": [("tf_efficientnet_lite0", 32, "cpu")],
        "flow": {"dim": 32, "grid": 6, "batch": 2},
        "repeat": 2,
    },
    "full": {
        "matmul": 2048,
        "backbones": [("tf_efficientnet_lite0", 160, "cpu"), ("wide_resnet50_2", 224, None)],
        "flow": {"dim": 768, "grid": 14, "batch": 4},
        "repeat": 3,
    },
}


def _matmul_rate(n: int, repeat: int) -> float:
    a = torch.randn(n, n, device=device())
    b = torch.randn(n, n, device=device())
    seconds = median_seconds(synced(lambda: a @ b), repeat=repeat)
    return 2 * n**3 / seconds


def run(scale: str = "full") -> Result:
    size = SIZES[scale]
    dev = device()
    peak = _matmul_rate(size["matmul"], size["repeat"])
    result = Result(
        "flops",
        "FLOPs against the measured limit",
        ["work", "GFLOP per unit", "unit", "measured ms / unit", "achieved GFLOP/s", "share of matmul rate"],
        command=f"python -m benchmarks --only flops --scale {scale}",
    )
    result.add(
        f"float32 matmul {size['matmul']}^3 (the limit)",
        2 * size["matmul"] ** 3 / 1e9,
        "product",
        1000 * 2 * size["matmul"] ** 3 / peak,
        peak / 1e9,
        1.0,
    )
    for backbone, side, profile in size["backbones"]:
        base = load_profile(profile) if profile else None  # the CPU profile's packaged weights; else random weights
        config = load_config(
            overrides=[
                f"features.backbone={backbone}",
                f"features.resize={side}",
                f"features.input_size={side}",
                *([] if profile else ["features.pretrained=false"]),
                "device=auto",
            ],
            base=base,
        )
        extractor = FeatureExtractor.from_config(config)
        images = torch.rand(2, 3, side, side)
        flops = count_flops(partial(extractor, images)) / 2
        seconds = median_seconds(partial(extractor, images), repeat=size["repeat"]) / 2
        result.add(
            f"{backbone} at {side} px + patch embedding",
            flops / 1e9,
            "image",
            1000 * seconds,
            flops / seconds / 1e9,
            flops / seconds / peak,
        )
    flow = size["flow"]
    x = torch.randn(flow["batch"], flow["grid"], flow["grid"], flow["dim"]).to(dev)
    step = mole_step([], flow["dim"], x, 1)
    flops = count_flops(step)
    seconds = median_seconds(step, repeat=size["repeat"])
    result.add(
        f"MoLE flow training step, task 1 (D = {flow['dim']}, {flow['batch']} x {flow['grid']}^2 patches)",
        flops / 1e9,
        "step",
        1000 * seconds,
        flops / seconds / 1e9,
        flops / seconds / peak,
    )
    result.notes.append(
        f"Device {dev}; medians of {size['repeat']} calls after one warm-up. FlopCounterMode counts multiply-adds as 2 "
        "FLOPs and only matrix products and convolutions, so elementwise work (activations, clamps, the log-det, "
        "Adam) is time without counted FLOPs: the share is a lower bound of how busy the arithmetic units are."
    )
    return result
