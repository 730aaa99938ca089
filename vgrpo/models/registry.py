"""One factory for every model family: `build_adapter(kind, path, device=..., dtype=..., **options)`.

Families: "shapes" (the built-in world), "flux" (FLUX.1-dev), "sd3" (SD 3.5 Medium / Large).
A new family is one adapter file plus one entry in `FAMILIES` (or a `register` call); the config
validation and the trainer read this table, so nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def _shapes_random(seed: int) -> ModelAdapter:
    from vgrpo.models.shapes import ShapesAdapter

    return ShapesAdapter.random(seed=seed)


@dataclass(frozen=True)
class ModelFamily:
    """One registry entry: how to load a family, and what its config may ask of it."""

    build: Callable[..., ModelAdapter]
    """build(path, device, dtype, **options) -> the adapter with its weights loaded."""
    needs_path: bool = True
    """model.path must name the weights folder (False: the family ships default weights)."""
    random: Callable[[int], ModelAdapter] | None = None
    """random(seed) -> the same architecture with seeded random weights (model.init=random); None = unsupported."""
    takes_options: bool = True
    """The build accepts the model.* options (resolution, guidance, offload, ...) and the memory-check options."""


FAMILIES: dict[str, ModelFamily] = {
    "shapes": ModelFamily(_shapes, needs_path=False, random=_shapes_random, takes_options=False),
    "flux": ModelFamily(_flux),
    "sd3": ModelFamily(_sd3),
}


def register(name: str, family: ModelFamily) -> None:
    """Add a model family under `name` (an adapter file elsewhere plus this one call)."""
    if name in FAMILIES:
        raise ValueError(f"model family {name!r} is already registered")
    FAMILIES[name] = family


def names() -> list[str]:
    """Every registered family name, in registration order."""
    return list(FAMILIES)


def family(kind: str) -> ModelFamily:
    """The registry entry of `kind`; ValueError naming the known families otherwise."""
    if kind not in FAMILIES:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {names()}")
    return FAMILIES[kind]


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
    entry = family(kind)
    options = {k: v for k, v in options.items() if v is not None}  # None = the family's default
    return entry.build(path, torch.device(device), dtype, **options)
