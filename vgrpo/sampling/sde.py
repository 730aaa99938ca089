"""The marginal-preserving SDE sampler with per-step Gaussian log-probs (Flow-GRPO's MDP view).

Only the MDP baseline needs this; V-GRPO rolls out with the deterministic ODE solvers.
Time runs from noise t = 1 to data t = 0 (dt < 0). For the rectified-flow ODE dx = v dt, the SDE
with the same marginals (Flow-GRPO, arXiv 2505.05470, eq. 9) takes Euler-Maruyama steps
    x' = x + [v + sigma_t^2 / (2 t) (x + (1 - t) v)] dt + sigma_t sqrt(-dt) n,   n ~ N(0, I)
with sigma_t = a sqrt(t / (1 - t)) (a = noise_level, about 0.7). At t = 1 the ratio t / (1 - t)
is evaluated at the grid's second point instead, as the reference implementation does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from vgrpo.utils.schedule import shift_timesteps

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sde_timesteps(steps: int, shift: float = 1.0) -> torch.Tensor:
    """[steps + 1] float64 grid from t = 1 down to t = 0 on the shifted schedule."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return shift_timesteps(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


def sde_step_mean_std(
    x: torch.Tensor, v: torch.Tensor, t: float, t_next: float, t_cap: float, noise_level: float
) -> tuple[torch.Tensor, float]:
    """Mean [B, *latent] (float32) and scalar std of the Gaussian transition x_t -> x_{t_next}.

    t_cap: the value used for t in sigma_t's denominator when t = 1 (the grid's second point).
    """
    dt = t_next - t
    sigma = noise_level * math.sqrt(t / (1.0 - (t_cap if t >= 1.0 else t)))
    x = x.float()
    v = v.float()
    mean = x + (v + sigma**2 / (2.0 * t) * (x + (1.0 - t) * v)) * dt
    return mean, sigma * math.sqrt(-dt)


def gaussian_log_prob(x_next: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Per-sample log N(x_next; mean, std^2 I), averaged over latent elements: [B] float32.

    The mean over elements (not the sum) is Flow-GRPO's convention; it keeps PPO ratios O(1).
    """
    elem = -((x_next.float() - mean) ** 2) / (2.0 * std**2) - math.log(std) - 0.5 * math.log(2 * math.pi)
    return elem.flatten(1).mean(1)


@dataclass
class SdeTrajectory:
    """latents: [T + 1, B, *latent] from noise to sample; log_probs: [T, B]; timesteps: [T + 1]."""

    latents: torch.Tensor
    log_probs: torch.Tensor
    timesteps: torch.Tensor

    @property
    def sample(self) -> torch.Tensor:
        return self.latents[-1]


@torch.no_grad()
def sample_sde(
    velocity_fn: VelocityFn,
    noise: torch.Tensor,
    *,
    steps: int,
    shift: float = 1.0,
    noise_level: float = 0.7,
    generator: torch.Generator | None = None,
    step_noise: torch.Tensor | None = None,
) -> SdeTrajectory:
    """Roll out the SDE from `noise` ([B, *latent] at t = 1), storing every step and its log-prob.

    velocity_fn(z [B, *latent], t [B]) -> v [B, *latent]. The per-step noise is drawn on the CPU
    from `generator` (reproducible on any device), or taken from `step_noise` ([steps, B, *latent]
    standard normal, e.g. drawn per sample so the trajectories do not depend on the batching).
    """
    if step_noise is not None and tuple(step_noise.shape) != (steps, *noise.shape):
        raise ValueError(
            f"step_noise must be [steps, B, *latent] = {[steps, *noise.shape]}, got {list(step_noise.shape)}"
        )
    grid = sde_timesteps(steps, shift)
    t_cap = float(grid[1])
    x = noise.float()
    latents, log_probs = [x], []
    for i in range(steps):
        t, t_next = float(grid[i]), float(grid[i + 1])
        v = velocity_fn(x, torch.full((x.shape[0],), t, device=x.device))
        mean, std = sde_step_mean_std(x, v, t, t_next, t_cap, noise_level)
        n = step_noise[i] if step_noise is not None else torch.randn(x.shape, generator=generator, dtype=torch.float32)
        n = n.to(x.device, torch.float32)
        x = mean + std * n
        latents.append(x)
        log_probs.append(gaussian_log_prob(x, mean, std))
    return SdeTrajectory(torch.stack(latents), torch.stack(log_probs), grid.float())


def step_log_prob(
    velocity_fn: VelocityFn,
    trajectory: SdeTrajectory,
    step: int,
    noise_level: float = 0.7,
) -> torch.Tensor:
    """Log-prob [B] of the stored transition `step` under `velocity_fn` (differentiable through it)."""
    grid = trajectory.timesteps.double()
    t, t_next, t_cap = float(grid[step]), float(grid[step + 1]), float(grid[1])
    x = trajectory.latents[step]
    v = velocity_fn(x, torch.full((x.shape[0],), t, device=x.device))
    mean, std = sde_step_mean_std(x, v, t, t_next, t_cap, noise_level)
    return gaussian_log_prob(trajectory.latents[step + 1], mean, std)
