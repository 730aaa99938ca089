"""The Flow-GRPO policy loss: per-step importance ratios of SDE transitions, PPO clipping, KL to the reference.

Flow-GRPO (arXiv 2505.05470, reference code flow_grpo/train_sd3.py) treats every denoising step as
an action: for each trained step j of sample i, rho_ij = exp(log p_theta(x_{j+1} | x_j) -
log p_old(x_{j+1} | x_j)), and the clipped objective is averaged over samples and steps. Returns
the same `PolicyLoss` (and metric names) as `vgrpo_policy_loss`, with one ratio per (sample, step).
"""

from __future__ import annotations

import torch

from vgrpo.objective.policy_loss import PolicyLoss, clipped_ratio_loss


def flowgrpo_policy_loss(
    log_prob: torch.Tensor,
    log_prob_old: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_range: float | None = 1e-4,
    step_kl: torch.Tensor | None = None,
    beta: float = 0.0,
) -> PolicyLoss:
    """-mean_ij min(rho_ij A_i, clip(rho_ij, 1 - e, 1 + e) A_i) + beta * mean_ij KL_ij.

    The old log-probs are constants (no gradient flows into them).

    Args:
        log_prob: [B, S] log-prob of each trained step's stored transition under theta.
        log_prob_old: [B, S] the same under the behaviour (rollout) policy.
        advantages: [B], shared by all steps of a sample.
        clip_range: e, or None for no clipping.
        step_kl: [B, S] KL of theta's transition to the reference model's (used when beta > 0,
            logged whenever given).
        beta: KL weight.
    Returns:
        PolicyLoss with ratio [B * S] (sample-major) and the metrics of `vgrpo_policy_loss`.
    """
    if log_prob.shape != log_prob_old.shape or log_prob.dim() != 2:
        raise ValueError(
            f"log_prob and log_prob_old must both be [B, S], got {list(log_prob.shape)} and {list(log_prob_old.shape)}"
        )
    if advantages.shape != log_prob.shape[:1]:
        raise ValueError(f"advantages must be [B] = [{log_prob.shape[0]}], got {list(advantages.shape)}")
    if clip_range is not None and clip_range <= 0:
        raise ValueError(f"clip_range must be > 0 or None, got {clip_range}")
    if beta > 0 and step_kl is None:
        raise ValueError("beta > 0 needs step_kl (the reference model's transition means)")

    log_ratio = log_prob.float() - log_prob_old.detach().float()
    return clipped_ratio_loss(log_ratio, advantages[:, None], clip_range=clip_range, kl=step_kl, beta=beta)
