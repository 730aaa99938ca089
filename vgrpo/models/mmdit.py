"""The velocity call of diffusers' SD3Transformer2DModel (MMDiT), shared by SD 3.5 and the built-in model."""

from __future__ import annotations

import torch
from torch import nn

from vgrpo.models.base import Conditioning


def mmdit_velocity(
    denoiser: nn.Module, z: torch.Tensor, t: torch.Tensor, cond: Conditioning, dtype: torch.dtype
) -> torch.Tensor:
    """v = denoiser(z, 1000 t, text states, pooled) as the SD3 pipeline calls it.

    Args:
        z: [B, C, H, W]; t: [B] in (0, 1]; cond: `encoder_hidden_states` [B, L, D] and
        `pooled_projections` [B, P]; dtype: the denoiser's parameter dtype.
    Returns:
        v: [B, C, H, W] in dtype.
    """
    return denoiser(
        hidden_states=z.to(dtype),
        encoder_hidden_states=cond.tensors["encoder_hidden_states"].to(dtype),
        pooled_projections=cond.tensors["pooled_projections"].to(dtype),
        timestep=(t * 1000.0).to(dtype),
        return_dict=False,
    )[0]
