"""Estimate a model directory's device-memory need from its safetensors headers, before loading.

A safetensors file starts with an 8-byte little-endian header length and a JSON header giving every
tensor's dtype and shape, so the parameter count of a 12B model is read in milliseconds without
touching the weights. `check_fits` compares the estimate with the device's free memory and raises
`InsufficientMemoryError` with the numbers instead of an out-of-memory trace halfway through loading.

What the estimate counts (a lower bound: activations depend on batch, resolution and checkpointing
and are not included):
- the transformer's parameters in the training dtype, sharded over `shards` ranks (FSDP2);
- full fine-tuning: gradients in the training dtype plus AdamW's two float32 moments, also sharded;
  LoRA: the adapters are negligible next to the base weights;
- the largest of the text encoders and the VAE in the training dtype when they are offloaded
  (only one is on the device at a time), all of them when they stay resident.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vgrpo.models.local_dir import ModelDirError, safetensors_header, weight_files


class InsufficientMemoryError(RuntimeError):
    """The model needs more device memory than is free."""


GIB = 2**30


def safetensors_numel(path: str | Path) -> int:
    """Number of elements stored in one .safetensors file, read from its (checked) header only."""
    return sum(math.prod(info["shape"]) for info in safetensors_header(path).values())


def component_numel(folder: str | Path) -> int:
    """Parameter count of one weights subfolder (all its safetensors shards)."""
    files = weight_files(Path(folder))
    if not files:
        raise ModelDirError(f"no *.safetensors weights in {folder}")
    return sum(safetensors_numel(f) for f in files)


@dataclass
class MemoryNeed:
    """Estimated device bytes, per item ("transformer weights", "optimizer state", ...)."""

    items: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.items.values())

    def describe(self) -> str:
        return ", ".join(f"{k} {v / GIB:.2f} GiB" for k, v in self.items.items())


def estimate_need(
    root: str | Path,
    *,
    dtype: torch.dtype = torch.bfloat16,
    finetune: str = "lora",
    shards: int = 1,
    offload: bool = True,
    auxiliary: tuple[str, ...] = ("vae", "text_encoder", "text_encoder_2", "text_encoder_3"),
) -> MemoryNeed:
    """Device memory one rank needs for the model in `root` (see the module docstring).

    Args:
        root: diffusers-format directory (a `transformer/` subfolder plus the `auxiliary` ones present).
        dtype: dtype the parameters are held in.
        finetune: "lora" or "full".
        shards: ranks the transformer state is sharded over (FSDP2 world size).
        offload: text encoders and VAE live on the CPU and visit the device one at a time.
    """
    if finetune not in ("lora", "full"):
        raise ValueError(f"finetune must be 'lora' or 'full', got {finetune!r}")
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    root = Path(root)
    size = torch.empty((), dtype=dtype).element_size()
    n = component_numel(root / "transformer")
    need = MemoryNeed({"transformer weights": n * size // shards})
    if finetune == "full":
        need.items["gradients"] = n * size // shards
        need.items["optimizer state"] = n * 8 // shards
    aux = {name: component_numel(root / name) * size for name in auxiliary if (root / name).is_dir()}
    if aux:
        if offload:
            name = max(aux, key=aux.get)
            need.items[f"largest offloaded component ({name})"] = aux[name]
        else:
            need.items["text encoders + VAE"] = sum(aux.values())
    return need


def free_device_bytes(device: torch.device | str) -> int | None:
    """Free bytes on a CUDA device (None for CPU: host memory is not checked)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return int(free)


def check_fits(
    need: MemoryNeed, device: torch.device | str, *, budget_bytes: int | None = None, what: str = "model"
) -> None:
    """Raise InsufficientMemoryError when `need` exceeds `budget_bytes` (default: the device's free memory)."""
    budget = free_device_bytes(device) if budget_bytes is None else budget_bytes
    if budget is None or need.total <= budget:
        return
    raise InsufficientMemoryError(
        f"{what} needs at least {need.total / GIB:.2f} GiB on {device} ({need.describe()}; activations "
        f"not counted) but only {budget / GIB:.2f} GiB is free. Use more GPUs (FSDP2 shards the "
        f"transformer), LoRA instead of full fine-tuning, offloaded text encoders, or a larger device."
    )
