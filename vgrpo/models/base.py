"""One interface for every model family the trainer drives (built-in world, FLUX.1-dev, SD 3.5).

A new model is one small file implementing `ModelAdapter`; the trainer, samplers and objective only
see this interface. Convention (rectified flow, as diffusers' FlowMatch schedulers): time runs
from data t = 0 to noise t = 1, z_t = (1 - t) x0 + t eps, and the denoiser predicts the velocity
v = eps - x0.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn


@dataclass
class Conditioning:
    """Batch-first tensors the denoiser needs for a batch of prompts (text states, pooled, ids...).

    tensors: name -> [B, ...] tensor; every tensor shares the batch size B.
    """

    tensors: dict[str, torch.Tensor]

    @property
    def batch_size(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def index(self, index: torch.Tensor | slice) -> Conditioning:
        return Conditioning({k: v[index] for k, v in self.tensors.items()})

    def repeat_interleave(self, repeats: int) -> Conditioning:
        """[B, ...] -> [B * repeats, ...], each row repeated `repeats` times in place."""
        return Conditioning({k: v.repeat_interleave(repeats, dim=0) for k, v in self.tensors.items()})

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Conditioning:
        return Conditioning(
            {
                k: v.to(device, dtype if (dtype is not None and v.is_floating_point()) else v.dtype)
                for k, v in self.tensors.items()
            }
        )

    @staticmethod
    def cat(items: Sequence[Conditioning]) -> Conditioning:
        return Conditioning({k: torch.cat([c.tensors[k] for c in items]) for k in items[0].tensors})


class ModelAdapter(ABC):
    """How one model family encodes prompts, predicts velocity, and decodes latents to pixels.

    Attributes:
        denoiser: the trainable transformer (what LoRA, FSDP2, compile and checkpointing wrap).
        latent_shape: one sample's latent shape, e.g. (C, H, W) or (tokens, channels).
    """

    denoiser: nn.Module
    latent_shape: tuple[int, ...]

    @abstractmethod
    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        """Text conditioning for `prompts` ([P, ...] tensors on the denoiser's device); cached."""

    @abstractmethod
    def null_conditioning(self, batch_size: int) -> Conditioning:
        """Unconditional (empty-prompt) conditioning for classifier-free guidance."""

    @abstractmethod
    def velocity(self, z: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Velocity prediction.

        Args:
            z: [B, *latent_shape] noised latents (any float dtype; cast to the denoiser's).
            t: [B] timesteps in (0, 1].
            cond: conditioning with batch size B.
        Returns:
            v: [B, *latent_shape] in the denoiser's dtype.
        """

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, *latent_shape] -> images [B, 3, H, W] float in [0, 1]."""

    @abstractmethod
    def transformer_blocks(self) -> list[nn.Module]:
        """The denoiser's repeated blocks (units for FSDP2 sharding, compile and checkpointing)."""

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    def check_velocity_inputs(self, z: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> None:
        """Raise ValueError naming the argument when z, t or cond do not fit `velocity`."""
        if tuple(z.shape[1:]) != tuple(self.latent_shape):
            raise ValueError(f"z must be [B, {', '.join(map(str, self.latent_shape))}], got {tuple(z.shape)}")
        if t.shape != (z.shape[0],):
            raise ValueError(f"t must be [B] = [{z.shape[0]}], got {tuple(t.shape)}")
        if cond.batch_size != z.shape[0]:
            raise ValueError(f"conditioning batch {cond.batch_size} != latent batch {z.shape[0]}")
