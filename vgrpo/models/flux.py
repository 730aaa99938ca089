"""`FluxAdapter`: FLUX.1-dev (FluxTransformer2DModel, CLIP-L + T5-XXL, 16-channel VAE) from a local
diffusers-format directory.

Conventions, as diffusers' FluxPipeline (0.42):
- latents are packed: the VAE latent [B, 16, H/8, W/8] is cut into 2x2 patches, giving
  latent_shape = (tokens, 64) with tokens = (H/16) * (W/16);
- image ids [tokens, 3] = (0, row, col) of each patch; text ids [S, 3] = 0;
- the transformer takes timestep = t in (0, 1] (it multiplies by 1000 inside) and the distilled
  guidance embedding `guidance` [B] (3.5 by default; FLUX.1-dev has no true CFG);
- text: CLIP-L pooled output -> pooled_projections [B, 768]; T5 last hidden states, padded to
  `max_sequence_length` tokens -> encoder_hidden_states [B, S, 4096];
- decode: unpack, latents / scaling_factor + shift_factor, VAE decode, [-1, 1] -> [0, 1].
The pipeline's resolution-dependent time shift (mu from the image sequence length) equals a static
shift of exp(mu); `pipeline_shift` gives it for the rollout config.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from vgrpo.models.base import Conditioning, ModelAdapter
from vgrpo.models.hf_components import (
    PromptCache,
    clip_embeds,
    load_module,
    load_tokenizer,
    on_device,
    resolve_offload,
    t5_embeds,
    tokenize,
    vae_decode,
)
from vgrpo.models.checked_load import load_transformer


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] VAE latents -> [B, (h/2)(w/2), 4C] packed 2x2 patches (FluxPipeline._pack_latents)."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(packed: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B, (h/2)(w/2), 4C] -> [B, C, h, w] (FluxPipeline._unpack_latents with h, w the VAE latent size)."""
    b, _, ch = packed.shape
    x = packed.view(b, h // 2, w // 2, ch // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, ch // 4, h, w)


def image_ids(h: int, w: int) -> torch.Tensor:
    """[(h/2)(w/2), 3] float32 ids (0, row, col) of the packed patches (FluxPipeline._prepare_latent_image_ids)."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] += torch.arange(h // 2)[:, None]
    ids[..., 2] += torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3)


def pipeline_shift(tokens: int, scheduler_config: dict[str, Any]) -> float:
    """Static time shift equal to FluxPipeline's dynamic shift at `tokens` image tokens: exp(mu)."""
    base_len = scheduler_config.get("base_image_seq_len", 256)
    max_len = scheduler_config.get("max_image_seq_len", 4096)
    base_shift = scheduler_config.get("base_shift", 0.5)
    max_shift = scheduler_config.get("max_shift", 1.15)
    m = (max_shift - base_shift) / (max_len - base_len)
    return math.exp(tokens * m + base_shift - m * base_len)


class FluxAdapter(ModelAdapter):
    """FLUX.1 [dev] behind the `ModelAdapter` interface.

    latent_shape = (tokens, 4 * C_vae) = ((H/16)(W/16), 64). Conditioning tensors:
    encoder_hidden_states [B, S, 4096] (T5) and pooled_projections [B, 768] (CLIP-L).
    """

    def __init__(
        self,
        transformer: nn.Module,
        vae: nn.Module,
        text_encoder: nn.Module,
        text_encoder_2: nn.Module,
        tokenizer,
        tokenizer_2,
        *,
        resolution: int = 1024,
        guidance: float = 3.5,
        max_sequence_length: int = 512,
        offload: bool | None = None,
        scheduler_config: dict[str, Any] | None = None,
    ) -> None:
        self.denoiser = transformer
        self.vae, self.text_encoder, self.text_encoder_2 = vae, text_encoder, text_encoder_2
        self.tokenizer, self.tokenizer_2 = tokenizer, tokenizer_2
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        patch = self.vae_scale_factor * 2
        if resolution % patch:
            raise ValueError(f"resolution must be a multiple of {patch} (VAE factor x 2x2 packing), got {resolution}")
        self.resolution = resolution
        self.latent_hw = (resolution // self.vae_scale_factor, resolution // self.vae_scale_factor)
        tokens = (self.latent_hw[0] // 2) * (self.latent_hw[1] // 2)
        self.latent_shape = (tokens, int(transformer.config.in_channels))
        self.guidance = float(guidance)
        self.max_sequence_length = int(max_sequence_length)
        self.offload = resolve_offload(offload, self.device)
        self.sampling = {"shift": pipeline_shift(tokens, scheduler_config or {})}
        self._img_ids = image_ids(*self.latent_hw)
        self.cache = PromptCache(self._encode)

    # Construction ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.bfloat16,
        finetune: str = "lora",
        shards: int = 1,
        check_memory: bool = True,
        **options: Any,
    ) -> FluxAdapter:
        """Load from a diffusers-format FLUX.1 directory (validated first, memory checked before loading).

        options: resolution (1024), guidance (3.5), max_sequence_length (512), offload (auto: on for GPU).
        """
        from diffusers import AutoencoderKL, FluxTransformer2DModel
        from transformers import CLIPTextModel, T5EncoderModel

        root, transformer, scheduler_config = load_transformer(
            FluxTransformer2DModel, path, "flux", device=torch.device(device), dtype=dtype, finetune=finetune,
            shards=shards, check_memory=check_memory, offload=options.get("offload"),
        )
        return cls(
            transformer,
            load_module(AutoencoderKL, root, "vae", dtype),
            load_module(CLIPTextModel, root, "text_encoder", dtype),
            load_module(T5EncoderModel, root, "text_encoder_2", dtype),
            load_tokenizer(root, "tokenizer"),
            load_tokenizer(root, "tokenizer_2"),
            scheduler_config=scheduler_config,
            **options,
        )

    # ModelAdapter ---------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return next(self.denoiser.parameters()).dtype

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        with on_device(self.text_encoder, self.device, self.offload):
            _, pooled = clip_embeds(
                self.text_encoder, tokenize(self.tokenizer, prompts, self.tokenizer.model_max_length), penultimate=False
            )
        with on_device(self.text_encoder_2, self.device, self.offload):
            hidden = t5_embeds(self.text_encoder_2, tokenize(self.tokenizer_2, prompts, self.max_sequence_length))
        return {"encoder_hidden_states": hidden, "pooled_projections": pooled}

    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        """encoder_hidden_states [P, max_sequence_length, D_t5], pooled_projections [P, D_clip]; cached per prompt."""
        return Conditioning(self.cache.get(prompts, self.device, self.dtype))

    def null_conditioning(self, batch_size: int) -> Conditioning:
        """The empty prompt's conditioning repeated batch_size times."""
        return self.encode_prompts([""]).repeat_interleave(batch_size)

    def velocity(self, z: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """z [B, tokens, 64] packed latents, t [B] in (0, 1] -> v [B, tokens, 64] (denoiser dtype)."""
        self.check_velocity_inputs(z, t, cond)
        dtype, device = self.dtype, z.device
        text = cond.tensors["encoder_hidden_states"]
        guidance = None
        if self.denoiser.config.guidance_embeds:
            guidance = torch.full((z.shape[0],), self.guidance, device=device, dtype=dtype)
        return self.denoiser(
            hidden_states=z.to(dtype),
            timestep=t.to(dtype),
            guidance=guidance,
            pooled_projections=cond.tensors["pooled_projections"].to(dtype),
            encoder_hidden_states=text.to(dtype),
            txt_ids=torch.zeros(text.shape[1], 3, device=device, dtype=dtype),
            img_ids=self._img_ids.to(device, dtype),
            return_dict=False,
        )[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, tokens, 64] packed latents -> images [B, 3, resolution, resolution] float32 in [0, 1]."""
        cfg = self.vae.config
        x = unpack_latents(latents, *self.latent_hw)
        x = x / cfg.scaling_factor + (cfg.shift_factor or 0.0)
        with torch.no_grad(), on_device(self.vae, self.device, self.offload):
            return vae_decode(self.vae, x)

    def transformer_blocks(self) -> list[nn.Module]:
        """19 double-stream then 38 single-stream blocks (FLUX.1-dev)."""
        return list(self.denoiser.transformer_blocks) + list(self.denoiser.single_transformer_blocks)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> FluxAdapter:
        """Move the denoiser; the frozen components follow it on their next use."""
        self.denoiser.to(device=device, dtype=dtype)
        self.cache.clear()
        return self
