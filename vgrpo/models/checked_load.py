"""The checked start of loading a diffusers pipeline directory, shared by the FLUX and SD3 adapters:
validate the layout, check the device memory before any weight is read, then load the trainable
transformer and the scheduler config."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vgrpo.models.hf_components import load_module, resolve_offload
from vgrpo.models.local_dir import read_json, validate_model_dir
from vgrpo.models.memory import check_fits, estimate_need


def load_transformer(
    transformer_cls: type,
    path: str | Path,
    kind: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    finetune: str,
    shards: int,
    check_memory: bool,
    offload: bool | None,
    auxiliary: tuple[str, ...] | None = None,
) -> tuple[Path, nn.Module, dict]:
    """(root, transformer on `device` in train mode with gradients on, scheduler_config).

    kind: "flux" or "sd3" (the expected layout, see `vgrpo.models.local_dir`); auxiliary: the
    components counted besides the transformer in the memory estimate (None = all the family has).
    Raises ModelDirError naming the path and the files expected, or a memory error with the
    estimated need, before any weight is loaded.
    """
    root = validate_model_dir(path, kind)
    if check_memory:
        extra = {} if auxiliary is None else {"auxiliary": auxiliary}
        need = estimate_need(root, dtype=dtype, finetune=finetune, shards=shards,
                             offload=resolve_offload(offload, device), **extra)
        check_fits(need, device, what=f"{kind.upper()} model {root}")
    transformer = load_module(transformer_cls, root, "transformer", dtype).to(device)
    transformer.requires_grad_(True).train()
    scheduler_config = read_json(root / "scheduler" / "scheduler_config.json")
    return root, transformer, scheduler_config
