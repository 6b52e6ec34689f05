"""The one device choice: what ``auto``, ``cpu``, ``cuda[:n]`` and ``gpu`` mean for every setting
that picks a device (``encoder.device``, ``tokenizer.device``, ``train.accelerator`` for testing,
``sasrec.device``, ``lookup.device``)."""

from __future__ import annotations

import torch

from sidrec.errors import ConfigError


def resolve_device(setting: str, key: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU. A GPU asked for by name must exist;
    ``key`` names the setting in the error. Other accelerators Lightning knows (e.g. ``mps``) pass
    through as torch devices."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = "cuda" if setting == "gpu" else setting
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}={setting!r} but no CUDA device is available (use auto or cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{key}={setting!r} is not a device (use auto, cpu or cuda)") from None
