"""One factory for every model family: `build_adapter(kind, path, device=..., dtype=..., **options)`.

Families: "shapes" (the built-in world), "flux" (FLUX.1-dev), "sd3" (SD 3.5 Medium / Large).
A new family is one adapter file plus one entry in `_BUILDERS`; the trainer is unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from vgrpo.models.base import ModelAdapter


def _shapes(path: str | None, device: torch.device, dtype: torch.dtype, **options: Any) -> ModelAdapter:
    from vgrpo.models.shapes import ShapesAdapter

    if options:
        raise ValueError(f"model 'shapes' takes no options, got {sorted(options)}")
    return ShapesAdapter.from_pretrained(path, device=device, dtype=dtype)


def _flux(path: str | None, device: torch.device, dtype: torch.dtype, **options: Any) -> ModelAdapter:
    from vgrpo.models.flux import FluxAdapter

    return FluxAdapter.from_pretrained(path, device=device, dtype=dtype, **options)


def _sd3(path: str | None, device: torch.device, dtype: torch.dtype, **options: Any) -> ModelAdapter:
    from vgrpo.models.sd3 import SD3Adapter

    return SD3Adapter.from_pretrained(path, device=device, dtype=dtype, **options)


_BUILDERS: dict[str, Callable[..., ModelAdapter]] = {"shapes": _shapes, "flux": _flux, "sd3": _sd3}
KINDS = tuple(_BUILDERS)


def build_adapter(
    kind: str,
    path: str | None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    **options: Any,
) -> ModelAdapter:
    """The adapter of family `kind` loaded from `path` onto `device` in `dtype`.

    options (flux / sd3): resolution, max_sequence_length, offload, finetune ("lora" | "full", for the
    memory check), shards (FSDP2 world size, for the memory check), check_memory; flux also guidance,
    sd3 also use_t5. Options set to None are dropped (the family's default applies). A missing or malformed directory raises ModelDirError naming the expected files;
    a model that cannot fit raises InsufficientMemoryError with the estimate, both before loading.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {list(KINDS)}")
    options = {k: v for k, v in options.items() if v is not None}  # None = the family's default
    return _BUILDERS[kind](path, torch.device(device), dtype, **options)
