"""`SD3Adapter`: Stable Diffusion 3.5 (Medium / Large) from a local diffusers-format directory.

Conventions, as diffusers' StableDiffusion3Pipeline (0.42):
- latents are the VAE's [B, 16, H/8, W/8]; latent_shape = (16, H/8, W/8);
- the transformer takes timestep = 1000 t;
- text: CLIP-L and CLIP-G (both CLIPTextModelWithProjection) penultimate hidden states,
  concatenated on channels (768 + 1280), zero-padded to the T5 width and concatenated on the
  sequence axis with T5-XXL's last hidden states -> encoder_hidden_states [B, 77 + S, 4096];
  their projected pooled outputs concatenated -> pooled_projections [B, 2048]. Without T5
  (`use_t5=False`, saves ~9 GB) the T5 part is zeros, as the pipeline does without text_encoder_3;
- CFG is the trainer's switch (rollout.cfg_scale); `null_conditioning` is the empty prompt,
  encoded like any other (the pipeline's default negative prompt);
- decode: latents / scaling_factor + shift_factor, VAE decode, [-1, 1] -> [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from vgrpo.models.base import Conditioning, ModelAdapter
from vgrpo.models.mmdit import mmdit_velocity
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


class SD3Adapter(ModelAdapter):
    """SD 3.5 behind the `ModelAdapter` interface.

    latent_shape = (16, H/8, W/8). Conditioning tensors: encoder_hidden_states [B, 77 + S, 4096]
    and pooled_projections [B, 2048].
    """

    def __init__(
        self,
        transformer: nn.Module,
        vae: nn.Module,
        text_encoders: tuple[nn.Module, nn.Module, nn.Module | None],
        tokenizers: tuple[Any, Any, Any],
        *,
        resolution: int = 512,
        max_sequence_length: int = 256,
        offload: bool | None = None,
        scheduler_config: dict[str, Any] | None = None,
    ) -> None:
        self.denoiser = transformer
        self.vae = vae
        self.text_encoder, self.text_encoder_2, self.text_encoder_3 = text_encoders
        self.tokenizer, self.tokenizer_2, self.tokenizer_3 = tokenizers
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        patch = self.vae_scale_factor * int(transformer.config.patch_size)
        if resolution % patch:
            raise ValueError(f"resolution must be a multiple of {patch} (VAE factor x patch size), got {resolution}")
        self.resolution = resolution
        side = resolution // self.vae_scale_factor
        self.latent_shape = (int(transformer.config.in_channels), side, side)
        self.max_sequence_length = int(max_sequence_length)
        self.offload = resolve_offload(offload, self.device)
        self.sampling = {"shift": float((scheduler_config or {}).get("shift", 1.0))}
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
        use_t5: bool = True,
        **options: Any,
    ) -> SD3Adapter:
        """Load from a diffusers-format SD 3.5 directory (validated first, memory checked before loading).

        options: resolution (512), max_sequence_length (256), offload (auto: on for GPU).
        """
        from diffusers import AutoencoderKL, SD3Transformer2DModel
        from transformers import CLIPTextModelWithProjection, T5EncoderModel

        root, transformer, scheduler_config = load_transformer(
            SD3Transformer2DModel, path, "sd3", device=torch.device(device), dtype=dtype, finetune=finetune,
            shards=shards, check_memory=check_memory, offload=options.get("offload"),
            auxiliary=("vae", "text_encoder", "text_encoder_2") + (("text_encoder_3",) if use_t5 else ()),
        )
        encoders = (
            load_module(CLIPTextModelWithProjection, root, "text_encoder", dtype),
            load_module(CLIPTextModelWithProjection, root, "text_encoder_2", dtype),
            load_module(T5EncoderModel, root, "text_encoder_3", dtype) if use_t5 else None,
        )
        tokenizers = tuple(load_tokenizer(root, f"tokenizer{s}") for s in ("", "_2", "_3"))
        return cls(
            transformer,
            load_module(AutoencoderKL, root, "vae", dtype),
            encoders,
            tokenizers,
            scheduler_config=scheduler_config,
            **options,
        )

    # ModelAdapter ---------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return next(self.denoiser.parameters()).dtype

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        hidden, pooled = [], []
        for enc, tok in ((self.text_encoder, self.tokenizer), (self.text_encoder_2, self.tokenizer_2)):
            with on_device(enc, self.device, self.offload):
                h, p = clip_embeds(enc, tokenize(tok, prompts, self.tokenizer.model_max_length), penultimate=True)
            hidden.append(h)
            pooled.append(p)
        clip = torch.cat(hidden, dim=-1)
        width = int(self.denoiser.config.joint_attention_dim)
        if self.text_encoder_3 is None:
            t5 = clip.new_zeros(len(prompts), self.max_sequence_length, width)
        else:
            with on_device(self.text_encoder_3, self.device, self.offload):
                t5 = t5_embeds(self.text_encoder_3, tokenize(self.tokenizer_3, prompts, self.max_sequence_length))
        clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return {
            "encoder_hidden_states": torch.cat([clip, t5.to(clip)], dim=-2),
            "pooled_projections": torch.cat(pooled, dim=-1),
        }

    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        """encoder_hidden_states [P, 77 + max_sequence_length, 4096], pooled_projections [P, 2048]; cached."""
        return Conditioning(self.cache.get(prompts, self.device, self.dtype))

    def null_conditioning(self, batch_size: int) -> Conditioning:
        """The empty prompt's conditioning repeated batch_size times (CFG's unconditional branch)."""
        return self.encode_prompts([""]).repeat_interleave(batch_size)

    def velocity(self, z: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """z [B, 16, H/8, W/8], t [B] in (0, 1] -> v [B, 16, H/8, W/8] (denoiser dtype)."""
        self.check_velocity_inputs(z, t, cond)
        return mmdit_velocity(self.denoiser, z, t, cond, self.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, 16, H/8, W/8] latents -> images [B, 3, resolution, resolution] float32 in [0, 1]."""
        cfg = self.vae.config
        x = latents / cfg.scaling_factor + (cfg.shift_factor or 0.0)
        with torch.no_grad(), on_device(self.vae, self.device, self.offload):
            return vae_decode(self.vae, x)

    def transformer_blocks(self) -> list[nn.Module]:
        """The joint (MMDiT) blocks."""
        return list(self.denoiser.transformer_blocks)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> SD3Adapter:
        """Move the denoiser; the frozen components follow it on their next use."""
        self.denoiser.to(device=device, dtype=dtype)
        self.cache.clear()
        return self
