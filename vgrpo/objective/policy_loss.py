"""The V-GRPO policy loss: importance ratio of ELBO surrogates, PPO clipping, KL, diagnostics."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PolicyLoss:
    """loss: scalar to minimise; ratio: [B]; metrics: scalar tensors (no host sync until logged)."""

    loss: torch.Tensor
    ratio: torch.Tensor
    metrics: dict[str, torch.Tensor]


def vgrpo_policy_loss(
    pair_loss: torch.Tensor,
    pair_loss_old: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_range: float | None = 1e-2,
    pair_kl: torch.Tensor | None = None,
    beta: float = 0.0,
) -> PolicyLoss:
    """-mean_i min(rho_i A_i, clip(rho_i, 1 - e, 1 + e) A_i) + beta * mean_ij D_ij.

    rho_i = exp(L_old(x_i) - L(x_i)) with L the mean over pairs of the per-pair surrogate (the mean
    sits inside the exp). The old surrogate is a constant (no gradient flows into it).

    Args:
        pair_loss: [B, K] surrogate terms of the current policy (`ElboTerms.loss`).
        pair_loss_old: [B, K] the behaviour policy's terms on the same pairs.
        advantages: [B].
        clip_range: e, or None for no clipping.
        pair_kl: [B, K] mean squared x-prediction difference to the behaviour policy (`ElboTerms.kl`).
        beta: KL weight; the KL term is used only when beta > 0.
    """
    if pair_loss.shape != pair_loss_old.shape or pair_loss.dim() != 2:
        raise ValueError(
            f"pair_loss and pair_loss_old must both be [B, K], got {list(pair_loss.shape)} and "
            f"{list(pair_loss_old.shape)}"
        )
    if advantages.shape != pair_loss.shape[:1]:
        raise ValueError(f"advantages must be [B] = [{pair_loss.shape[0]}], got {list(advantages.shape)}")
    if clip_range is not None and clip_range <= 0:
        raise ValueError(f"clip_range must be > 0 or None, got {clip_range}")
    if beta > 0 and pair_kl is None:
        raise ValueError("beta > 0 needs pair_kl (call elbo_surrogate with v_old)")

    log_ratio = pair_loss_old.detach().float().mean(1) - pair_loss.float().mean(1)
    return clipped_ratio_loss(log_ratio, advantages, clip_range=clip_range, kl=pair_kl, beta=beta)


def clipped_ratio_loss(
    log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    *,
    clip_range: float | None,
    kl: torch.Tensor | None = None,
    beta: float = 0.0,
) -> PolicyLoss:
    """PPO's clipped objective from log importance ratios, shared by V-GRPO and Flow-GRPO.

    Args:
        log_ratio: [B] (one action per sample) or [B, S] (one per sample and step), with gradient.
        advantages: broadcastable to log_ratio ([B] or [B, 1]).
        clip_range: e, or None for no clipping.
        kl: any-shape KL terms, averaged; added with weight beta when beta > 0, logged whenever given.
    Returns:
        PolicyLoss: loss = -mean min(rho A, clip(rho) A) + beta mean(kl); ratio flattened
        (sample-major); metrics ratio_mean/min/max, log_ratio_std, clip_fraction, policy_loss, kl.
    """
    ratio = torch.exp(log_ratio)
    adv = advantages.to(ratio)
    unclipped = ratio * adv
    if clip_range is None:
        objective = unclipped
        clipped_mask = torch.zeros_like(ratio, dtype=torch.bool)
    else:
        clipped = torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range) * adv
        objective = torch.minimum(unclipped, clipped)
        clipped_mask = clipped < unclipped
    loss = -objective.mean()
    metrics = {
        "ratio_mean": ratio.detach().mean(),
        "ratio_min": ratio.detach().min(),
        "ratio_max": ratio.detach().max(),
        "log_ratio_std": log_ratio.detach().std(unbiased=False),
        "clip_fraction": clipped_mask.float().mean(),
        "policy_loss": loss.detach(),
    }
    if kl is not None:
        kl_mean = kl.float().mean()
        metrics["kl"] = kl_mean.detach()
        if beta > 0:
            loss = loss + beta * kl_mean
    return PolicyLoss(loss=loss, ratio=ratio.reshape(-1), metrics=metrics)


def surrogate_cv(surrogate: torch.Tensor, group_size: int) -> dict[str, torch.Tensor]:
    """Coefficient of variation of the per-sample surrogate L (std / mean).

    Args:
        surrogate: [B] per-sample surrogate L(x_i) (mean over pairs), groups contiguous.
    Returns:
        {"cv": over the whole batch, "cv_within_group": mean over groups of the in-group CV}.
    """
    s = surrogate.detach().double()
    cv = s.std(unbiased=False) / s.mean().abs().clamp(min=1e-12)
    grouped = s.reshape(-1, group_size)
    within = grouped.std(dim=1, unbiased=False) / grouped.mean(dim=1).abs().clamp(min=1e-12)
    return {"cv": cv.float(), "cv_within_group": within.mean().float()}
