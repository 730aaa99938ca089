"""The V-GRPO objective: pairs, advantages, the clipped ratio loss and its diagnostics."""

from vgrpo.objective.advantages import group_advantages, soft_clip
from vgrpo.objective.pairs import (
    SHARING_SCOPES,
    TimestepNoisePairs,
    draw_pairs,
    sample_timesteps,
    shift_timesteps,
)
from vgrpo.objective.policy_loss import PolicyLoss, surrogate_cv, vgrpo_policy_loss

__all__ = [
    "SHARING_SCOPES",
    "PolicyLoss",
    "TimestepNoisePairs",
    "draw_pairs",
    "group_advantages",
    "sample_timesteps",
    "shift_timesteps",
    "soft_clip",
    "surrogate_cv",
    "vgrpo_policy_loss",
]
