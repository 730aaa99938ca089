"""Shared pieces of the diffusers-pipeline adapters (FLUX.1, SD 3.5): loading components from a
local directory, keeping text encoders and the VAE off the device when idle, CLIP / T5 prompt
encoding exactly as the diffusers pipelines do it, and a per-prompt embedding cache.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn


def load_tokenizer(root: Path, sub: str):
    """The tokenizer saved in `root/sub` (class from its tokenizer_config.json), no hub access."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(root / sub), local_files_only=True)


def load_module(cls, root: Path, sub: str, dtype: torch.dtype) -> nn.Module:
    """`cls.from_pretrained(root/sub)` in `dtype`, frozen, in eval mode, on the CPU."""
    module = cls.from_pretrained(str(root / sub), local_files_only=True, dtype=dtype)
    return module.eval().requires_grad_(False)


@contextlib.contextmanager
def on_device(module: nn.Module, device: torch.device, offload: bool) -> Iterator[nn.Module]:
    """Run a block with `module` on `device`; when `offload`, move it back to the CPU afterwards
    (and release the cached blocks), so frozen text encoders / VAE hold no device memory when idle."""
    module.to(device)
    try:
        yield module
    finally:
        if offload and device.type != "cpu":
            module.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()


def tokenize(tokenizer, prompts: Sequence[str], max_length: int) -> torch.Tensor:
    """[P, max_length] int64 ids, padded to max_length and truncated (as the diffusers pipelines)."""
    return tokenizer(
        list(prompts), padding="max_length", max_length=max_length, truncation=True, return_tensors="pt"
    ).input_ids


def clip_embeds(encoder: nn.Module, ids: torch.Tensor, penultimate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP text states.

    Args:
        encoder: CLIPTextModel (pooled = pooler_output) or CLIPTextModelWithProjection (pooled = text_embeds).
        ids: [P, L] token ids.
        penultimate: also return the penultimate layer's hidden states (SD3) instead of nothing (FLUX).
    Returns:
        (hidden [P, L, D] or an empty tensor, pooled [P, D_pool]).
    """
    device = next(encoder.parameters()).device
    hidden, pooled = [], []
    for row in ids.to(device).split(1):  # one prompt at a time: see `PromptCache`
        out = encoder(row, output_hidden_states=penultimate)
        pooled.append(out[0] if out[0].dim() == 2 else out.pooler_output)
        hidden.append(out.hidden_states[-2] if penultimate else pooled[-1].new_empty(0))
    return torch.cat(hidden), torch.cat(pooled)


def t5_embeds(encoder: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """T5 encoder last hidden states [P, L, D] for ids [P, L], one prompt at a time (see `PromptCache`)."""
    device = next(encoder.parameters()).device
    return torch.cat([encoder(row, output_hidden_states=False)[0] for row in ids.to(device).split(1)])


class PromptCache:
    """Per-prompt embeddings kept on the CPU; each prompt is encoded once.

    A prompt's embedding must not depend on which other prompts were new in the same call (batched
    matmuls round differently with the batch size), or a resumed run, whose cache starts empty,
    would see other bits than an uninterrupted one: `clip_embeds` and `t5_embeds` run the encoders
    one prompt at a time (inside one `on_device` block, so offloaded encoders move once per call).

    `encode_fn(prompts) -> dict name -> [P, ...]` runs only for prompts not seen before; `get` returns
    the stacked tensors for the requested prompts in order, moved to `device` and cast to `dtype`.
    """

    def __init__(self, encode_fn: Callable[[list[str]], dict[str, torch.Tensor]]) -> None:
        self.encode_fn = encode_fn
        self.entries: dict[str, dict[str, torch.Tensor]] = {}
        self.encoder_calls = 0

    def get(self, prompts: Sequence[str], device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
        if isinstance(prompts, str):
            raise ValueError("encode_prompts takes a sequence of prompts, got a single str")
        if len(prompts) == 0:
            raise ValueError("encode_prompts needs at least one prompt")
        missing = [p for p in dict.fromkeys(prompts) if p not in self.entries]
        if missing:
            self.encoder_calls += 1
            with torch.no_grad():
                out = self.encode_fn(missing)
            for i, p in enumerate(missing):
                self.entries[p] = {k: v[i].detach().to("cpu", dtype) for k, v in out.items()}
        names = self.entries[prompts[0]].keys()
        return {k: torch.stack([self.entries[p][k] for p in prompts]).to(device) for k in names}

    def clear(self) -> None:
        self.entries.clear()


def vae_decode(vae: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """VAE latents [B, C, h, w] (already unscaled: latents / scaling_factor + shift_factor) ->
    images [B, 3, 8h, 8w] float32 in [0, 1]."""
    device = next(vae.parameters()).device
    dtype = next(vae.parameters()).dtype
    images = vae.decode(latents.to(device, dtype), return_dict=False)[0]
    return (images.float() * 0.5 + 0.5).clamp(0.0, 1.0)


def resolve_offload(offload: bool | None, device: torch.device) -> bool:
    """Default: offload text encoders and the VAE whenever the denoiser is on an accelerator."""
    return device.type != "cpu" if offload is None else bool(offload)
