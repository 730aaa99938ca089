"""FP8 training of a denoiser's linear layers (torchao `convert_to_float8_training`, a module swap).

Every `nn.Linear` whose name does not match `keep` (and whose dims are multiples of 16, as the FP8
GEMM needs) becomes a torchao `Float8Linear`: inputs, weights and output gradients are cast to
float8 with dynamic scales for the three GEMMs of forward + backward, master weights stay in their
dtype. The default filter keeps the layers that are small or numerically sensitive in high
precision:
- embedders: x_embedder, context_embedder, time_text_embed / time_embed, pos_embed (the inputs'
  and the timestep's first projection; tiny GEMMs anyway);
- AdaLN modulation linears (any name component starting with "norm": norm1.linear, norm_out.linear,
  ...): they map one [B, D] vector per sample (M = B rows, no FP8 speed-up) to scales and shifts
  that multiply every token;
- the final projection (top-level proj_out) that produces the velocity;
- LoRA adapters (lora_A / lora_B): low rank, trained in high precision.
Single-block proj_out / proj_mlp and all attention / MLP projections are converted.

On a device without FP8 tensor cores (CPU, or CUDA before sm_89) pass emulate=True: torchao then
emulates the scaled matmuls in high precision with float8-rounded operands, which is how the CPU
tests measure the numerics.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

KEEP_PATTERNS = ("x_embedder", "context_embedder", "time_text_embed", "time_embed", "pos_embed", "lora_")
"""Name components (prefix match) whose linears stay in high precision, besides norms and the final proj_out."""


def default_keep_filter(fqn: str, module: nn.Module) -> bool:
    """True when the linear `fqn` stays in high precision (see the module docstring)."""
    parts = fqn.split(".")
    if fqn == "proj_out":
        return True
    return any(p.startswith(KEEP_PATTERNS) or p.startswith("norm") for p in parts)


def fp8_supported(device: torch.device | str) -> bool:
    """Whether `device` has FP8 tensor cores (CUDA sm_89+: Ada, Hopper, Blackwell)."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def convert_to_fp8(
    module: nn.Module,
    keep_filter: Callable[[str, nn.Module], bool] = default_keep_filter,
    *,
    recipe: str = "tensorwise",
    emulate: bool | None = None,
) -> list[str]:
    """Swap `module`'s eligible nn.Linear layers for torchao Float8Linear, in place.

    Args:
        module: the denoiser (before FSDP2 wrapping and torch.compile).
        keep_filter: (fqn, linear) -> True to keep that layer in high precision.
        recipe: torchao recipe, "tensorwise" (fastest on H100/H200), "rowwise" or "rowwise_with_gw_hp".
        emulate: emulate FP8 GEMMs in high precision; None = emulate unless the module's device
            supports FP8 (always needed on CPU).
    Returns:
        The names of the converted layers.
    """
    try:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    except ImportError as e:
        raise ImportError("FP8 training needs torchao: pip install 'vgrpo[fp8]' (torchao>=0.12)") from e
    if emulate is None:
        param = next(module.parameters(), None)
        emulate = param is None or not fp8_supported(param.device)
    config = dataclasses.replace(Float8LinearConfig.from_recipe_name(recipe), emulate=emulate)
    converted: list[str] = []

    def convert(mod: nn.Module, fqn: str) -> bool:
        ok = mod.in_features % 16 == 0 and mod.out_features % 16 == 0 and not keep_filter(fqn, mod)
        if ok:
            converted.append(fqn)
        return ok

    convert_to_float8_training(module, module_filter_fn=convert, config=config)
    if not converted:
        raise ValueError(
            "convert_to_fp8 converted no linear layer: every layer was kept or has dims not divisible by 16"
        )
    return converted


def fp8_layer_names(module: nn.Module) -> list[str]:
    """Names of the Float8Linear layers in `module`."""
    from torchao.float8.float8_linear import Float8Linear

    return [name for name, m in module.named_modules() if isinstance(m, Float8Linear)]
