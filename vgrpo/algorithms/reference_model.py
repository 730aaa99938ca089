"""The reference (base) model without a second copy: the denoiser with its LoRA adapters switched off."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def lora_disabled(denoiser: nn.Module) -> Iterator[None]:
    """Run `denoiser` as its base model inside the block (peft's `disable_adapter()` for a model
    whose adapters were injected with `inject_adapter_in_model`).

    peft switches the adapters' `requires_grad` off and on again with them; the block restores
    every parameter's previous flag, so the set of trainable parameters is unchanged afterwards.

    Raises:
        ValueError: when the denoiser has no LoRA adapters (full fine-tuning has no base model left).
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in denoiser.modules() if isinstance(m, BaseTunerLayer)]
    if not layers:
        raise ValueError(
            "the reference model is the denoiser with its LoRA adapters disabled, but it has none "
            "(finetune.mode must be lora)"
        )
    trainable = [(p, p.requires_grad) for p in denoiser.parameters()]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for p, flag in trainable:
            p.requires_grad_(flag)
