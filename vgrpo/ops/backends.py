"""Which implementation of the ELBO ops runs: "torch" (reference), "cpp" (csrc/), "triton" (kernels/).

"auto" picks the fastest one available for the device. Fast paths register themselves in
`BACKEND_AVAILABLE`; until they do, only the reference exists.
"""

from __future__ import annotations

from typing import Callable

import torch

BACKENDS = ("auto", "torch", "cpp", "triton")

# name -> predicate(device) telling whether that backend can run there.
BACKEND_AVAILABLE: dict[str, Callable[[torch.device], bool]] = {"torch": lambda device: True}

# Preference order for "auto", per device type.
AUTO_ORDER = {"cuda": ("triton", "torch"), "cpu": ("cpp", "torch")}


def resolve_backend(backend: str, device: torch.device) -> str:
    """Return the concrete backend name for `backend` on `device`, or raise naming what is missing."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        for name in AUTO_ORDER.get(device.type, ("torch",)):
            if name in BACKEND_AVAILABLE and BACKEND_AVAILABLE[name](device):
                return name
        return "torch"
    available = BACKEND_AVAILABLE.get(backend)
    if available is None or not available(device):
        raise RuntimeError(f"backend {backend!r} is not available on {device.type}")
    return backend
