"""The compute device a run uses (``device: auto`` -> CUDA when present, else the CPU)."""

from __future__ import annotations

import torch

from moleflow.errors import ConfigError


def resolve_device(name: str, what: str = "device") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise the named device (``cpu``, ``cuda``, ``cuda:1``, ``mps``).

    Raises:
        ConfigError: one line naming ``what``: a name that is no device, or a CUDA (MPS) device this machine's
            torch does not see.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{what}: {name!r} is not a device (auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{what}: {name} asked for, but torch sees no CUDA device here (use auto or cpu)")
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"{what}: {name} asked for, but torch sees {count} CUDA device(s) (cuda:0 to cuda:{count - 1})"
            )
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{what}: mps asked for, but torch sees no MPS device here (use auto or cpu)")
    elif device.type != "cpu":
        raise ConfigError(f"{what}: {name!r} is not a device this harness runs on (auto, cpu, cuda, cuda:N or mps)")
    return device
