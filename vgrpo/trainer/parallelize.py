"""Make the denoiser trainable and parallel: LoRA or full fine-tuning, then (torchtitan order)
activation checkpointing, per-block torch.compile, and FSDP2 `fully_shard` per block and root.

Everything is applied in place on `adapter.denoiser` and its blocks, so the adapter keeps working
unchanged. No second copy of the model is ever made: the KL reference is the behaviour policy,
whose predictions are stored during scoring.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from vgrpo.models.base import ModelAdapter
from vgrpo.trainer.config import FinetuneConfig, ParallelConfig
from vgrpo.utils.distributed import World

log = logging.getLogger(__name__)


def lora_config(cfg: FinetuneConfig):
    """The peft `LoraConfig` of `finetune.lora_*` (scale lora_alpha / lora_rank), as trained and exported."""
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=list(cfg.lora_targets)
    )


def apply_finetune_mode(denoiser: nn.Module, cfg: FinetuneConfig) -> list[nn.Parameter]:
    """Inject LoRA adapters (peft) or unfreeze everything; return the trainable parameters.

    Raises:
        ValueError: when no module of the denoiser matches `lora_targets`.
    """
    if cfg.mode == "full":
        for p in denoiser.parameters():
            p.requires_grad_(True)
        return [p for p in denoiser.parameters()]
    from peft import inject_adapter_in_model

    names = [n for n, _ in denoiser.named_modules()]
    if not any(n == t or n.endswith("." + t) for n in names for t in cfg.lora_targets):
        raise ValueError(
            f"finetune.lora_targets {cfg.lora_targets} match no module of the denoiser; "
            f"linear modules include {sorted({n.split('.')[-1] for n, m in denoiser.named_modules() if isinstance(m, nn.Linear)})}"
        )
    inject_adapter_in_model(lora_config(cfg), denoiser)
    params = []
    for name, p in denoiser.named_parameters():
        p.requires_grad_("lora_" in name)
        if p.requires_grad:
            params.append(p)
    return params


def apply_speed_switches(denoiser: nn.Module, cfg: ParallelConfig, device: torch.device) -> None:
    """FP8 linear layers (torchao; emulated off CUDA) and the attention backend, before LoRA."""
    if cfg.fp8:
        from vgrpo.accel.fp8 import convert_to_fp8

        converted = convert_to_fp8(denoiser, emulate=device.type != "cuda")
        log.info("fp8: %d linear layers converted", len(converted))
    if cfg.attention != "sdpa":
        from vgrpo.accel.attention import set_attention_backend

        set_attention_backend(denoiser, cfg.attention)


def uses_fsdp(cfg: ParallelConfig, world: World) -> bool:
    if cfg.fsdp == "on":
        return True
    if cfg.fsdp == "off":
        return False
    # auto: shard whenever a process group exists and there is something to gain (several ranks,
    # or bf16 mixed precision on GPU); a plain `python -m vgrpo.train` run stays unsharded.
    return world.distributed and (world.world_size > 1 or world.device.type == "cuda")


def mixed_precision_dtype(cfg: ParallelConfig, device: torch.device) -> torch.dtype | None:
    """bf16 compute dtype, or None for full precision."""
    if cfg.mixed_precision == "bf16" or (cfg.mixed_precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def parallelize(adapter: ModelAdapter, cfg: ParallelConfig, world: World) -> bool:
    """Apply activation checkpointing, compile and FSDP2 to `adapter.denoiser` in place.

    Returns:
        whether FSDP2 was applied (the loop then controls gradient sync across micro-batches).
    """
    blocks = adapter.transformer_blocks()
    if not blocks:
        raise ValueError("the adapter reports no transformer blocks to parallelize")
    if cfg.activation_checkpointing:
        from torch.distributed._composable import checkpoint

        for block in blocks:
            checkpoint(block)
    if cfg.compile:
        for block in blocks:
            block.compile(dynamic=False)
    fsdp = uses_fsdp(cfg, world)
    compute = mixed_precision_dtype(cfg, world.device)
    if fsdp:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        if not torch.distributed.is_initialized():
            raise RuntimeError("parallel.fsdp needs a process group: launch with torchrun")
        mp = MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=torch.float32) if compute else MixedPrecisionPolicy()
        for i, block in enumerate(blocks):
            # The last block's parameters are needed right away in backward: keep them gathered.
            fully_shard(block, mp_policy=mp, reshard_after_forward=i < len(blocks) - 1)
        fully_shard(adapter.denoiser, mp_policy=mp)
    elif compute is not None:
        # One process without FSDP: run the whole denoiser under bf16 autocast instead.
        adapter.denoiser.forward = _autocast_forward(adapter.denoiser.forward, world.device, compute)
    log.info(
        "parallelize: fsdp=%s mixed_precision=%s compile=%s activation_checkpointing=%s",
        fsdp, compute, cfg.compile, cfg.activation_checkpointing,
    )
    return fsdp


def _autocast_forward(forward, device: torch.device, dtype: torch.dtype):
    def wrapped(*args, **kwargs):
        with torch.autocast(device.type, dtype=dtype):
            return forward(*args, **kwargs)

    return wrapped
