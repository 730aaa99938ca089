"""Classifier-free guidance: the one implementation every model, both rollouts and the update use.

    v = v_u + s (v_c - v_u),   v_c = v(z, t | prompt),  v_u = v(z, t | empty prompt),  s = scale.

A scale of 1 is no guidance: one conditional forward, nothing else. FLUX.1-dev's distilled guidance
is not CFG: it is a model input (`model.guidance`), handled inside the FLUX adapter.
"""

from __future__ import annotations

from typing import Callable

import torch

from vgrpo.models.base import Conditioning, ModelAdapter

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def forwards_per_velocity(scale: float) -> int:
    """Model forward evaluations one guided velocity costs: 2 with guidance (scale != 1), else 1."""
    return 1 if scale == 1.0 else 2


def guided_velocity(adapter: ModelAdapter, cond: Conditioning, scale: float, *, batched: bool = True) -> VelocityFn:
    """(z, t) -> v with classifier-free guidance of strength `scale` for the prompts of `cond`.

    The empty prompt's conditioning is built once, here, not per call.

    Args:
        cond: conditioning with batch B (the velocity function then takes z [B, *latent], t [B]).
        scale: guidance scale s; 1 returns `adapter.velocity` on `cond` alone.
        batched: with guidance, one forward over the 2B rows [cond; empty] (fewer, larger kernels;
            what the SDE rollout and Flow-GRPO's update use, so their log-probs are computed alike),
            or two forwards of B rows, unconditional first (half the activation memory; the ODE
            rollout's way). The two agree up to floating-point batching effects.
    Returns:
        velocity(z [B, *latent], t [B]) -> v [B, *latent]: in the denoiser's dtype when scale = 1;
        float32 with guidance (both branches are read in float32 and combined as v_u + s (v_c - v_u)).
    """
    if scale == 1.0:
        return lambda z, t: adapter.velocity(z, t, cond)
    null = adapter.null_conditioning(cond.batch_size)
    if batched:
        both = Conditioning.cat([cond, null])

        def one_forward(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            v_cond, v_uncond = adapter.velocity(torch.cat([z, z]), torch.cat([t, t]), both).float().chunk(2)
            return _combine(v_cond, v_uncond, scale)

        return one_forward

    def two_forwards(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v_uncond = adapter.velocity(z, t, null).float()
        return _combine(adapter.velocity(z, t, cond).float(), v_uncond, scale)

    return two_forwards


def _combine(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """v_u + s (v_c - v_u) of two same-shape velocities (in their dtype)."""
    return v_uncond + scale * (v_cond - v_uncond)
