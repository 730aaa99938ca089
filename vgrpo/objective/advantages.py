"""Group-relative advantages of GRPO, with several rewards and optional soft-clipping."""

from __future__ import annotations

from typing import Sequence

import torch


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    *,
    weights: Sequence[float] | None = None,
    valid: torch.Tensor | None = None,
    std_eps: float = 1e-4,
    soft_clip_eta: float | None = None,
) -> torch.Tensor:
    """A_i = sum_r w_r (R_ir - mean_G R_r) / (std_G R_r + std_eps), optionally eta * tanh(A / eta).

    Each reward is normalised within its prompt group separately, then the weighted sum is taken.
    A group whose rewards are all equal (zero variance) gets advantage exactly 0, not NaN.

    Args:
        rewards: [B] or [B, R] with B = P * group_size; a group's samples are contiguous.
        weights: R weights (default all 1).
        valid: optional [B] bool mask; invalid samples (a reward model failed) get advantage 0 and
            are left out of their group's mean and std.
        soft_clip_eta: if set, soft-clip the advantages to (-eta, eta).
    Returns:
        advantages: [B] float32.
    """
    if rewards.dim() == 1:
        rewards = rewards.unsqueeze(1)
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be [B] or [B, R], got shape {list(rewards.shape)}")
    b, r = rewards.shape
    if group_size < 1 or b % group_size != 0:
        raise ValueError(f"batch size {b} is not a multiple of group_size {group_size}")
    w = torch.ones(r) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    if w.shape != (r,):
        raise ValueError(f"weights must have one entry per reward ({r}), got {list(w.shape)}")
    if soft_clip_eta is not None and soft_clip_eta <= 0:
        raise ValueError(f"soft_clip_eta must be > 0, got {soft_clip_eta}")

    x = rewards.double().reshape(b // group_size, group_size, r)
    mask = torch.ones(b, dtype=torch.bool) if valid is None else valid.bool().cpu()
    mask = mask.to(x.device).reshape(b // group_size, group_size, 1)
    x = torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    count = mask.sum(dim=1, keepdim=True).clamp(min=1)
    mean = x.sum(dim=1, keepdim=True) / count
    centred = torch.where(mask, x - mean, torch.zeros((), dtype=x.dtype, device=x.device))
    std = (centred.square().sum(dim=1, keepdim=True) / count).sqrt()
    degenerate = std <= 1e-12 * (1.0 + mean.abs())
    normalised = torch.where(degenerate, torch.zeros_like(centred), centred / (std + std_eps))
    adv = (normalised * w.to(x)).sum(dim=-1).reshape(b)
    if soft_clip_eta is not None:
        adv = soft_clip(adv, soft_clip_eta)
    return adv.float()


def soft_clip(advantages: torch.Tensor, eta: float) -> torch.Tensor:
    """eta * tanh(A / eta): identity near 0, bounded by eta in magnitude."""
    return eta * torch.tanh(advantages / eta)
