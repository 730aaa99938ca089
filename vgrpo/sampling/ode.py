"""Deterministic ODE samplers for rectified flow: z_t = (1 - t) x0 + t eps, v = eps - x0.

Integrates dz/dt = v(z, t) from t = 1 (noise) to t = 0 (data) on the shifted grid
t_i = shift_timesteps(1 - i / steps, shift), i = 0..steps (t_0 = 1, t_steps = 0).

Why not call diffusers' schedulers directly: they are stateful objects (step index, stored model
outputs) that must be rebuilt or reset per call, take one scalar timestep for the whole batch, and
their default flow grid ends with an almost empty step (sigma_min = 1/1000 -> 0), wasting an NFE.
The update rules below are the same as FlowMatchEulerDiscreteScheduler,
FlowMatchHeunDiscreteScheduler and DPMSolverMultistepScheduler(algorithm_type="dpmsolver++",
solver_order=2, use_flow_sigmas=True, prediction_type="flow_prediction", lower_order_final=True)
on the same sigma grid; tests/test_sampling.py checks each against its diffusers counterpart.

Solvers and their velocity evaluations (NFE) for `steps` steps:
- "euler": first order, NFE = steps.
- "heun": second order (trapezoid), Euler on the last step into t = 0, NFE = 2 * steps - 1.
- "dpm++2m": DPM-Solver++ (2M, midpoint form) in data prediction x0 = z - t v and
  lambda = log((1 - t) / t); first order on the first step (from t = 1, where lambda = -inf) and the
  last (into t = 0), NFE = steps.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from vgrpo.utils.schedule import shift_timesteps

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SOLVERS = ("euler", "heun", "dpm++2m")


def time_grid(steps: int, shift: float = 1.0) -> torch.Tensor:
    """[steps + 1] float64 descending times from 1 to 0 (shifted)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return shift_timesteps(u, shift)


def nfe(solver: str, steps: int) -> int:
    """Velocity evaluations a solve with `steps` steps costs."""
    _check_solver(solver)
    return 2 * steps - 1 if solver == "heun" else steps


def _check_solver(solver: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}, expected one of {SOLVERS}")


@torch.no_grad()
def sample(
    velocity_fn: VelocityFn,
    noise: torch.Tensor,
    *,
    steps: int,
    solver: str = "euler",
    shift: float = 1.0,
) -> torch.Tensor:
    """Integrate from t = 1 (z = noise) to t = 0 deterministically.

    Args:
        velocity_fn: (z [B, *latent], t [B]) -> v [B, *latent]; called with float32 z and t.
        noise: [B, *latent] the starting point at t = 1.
        steps: number of solver steps (see the module docstring for NFE).
        solver: "euler", "heun" or "dpm++2m".
        shift: flow-matching time shift of the grid (1 = uniform).
    Returns:
        x0: [B, *latent] float32.
    """
    _check_solver(solver)
    grid = time_grid(steps, shift).tolist()
    z = noise.float().clone()
    b = z.shape[0]

    def v_at(x: torch.Tensor, t: float) -> torch.Tensor:
        out = velocity_fn(x, torch.full((b,), t, device=x.device, dtype=torch.float32)).float()
        if out.shape != x.shape:
            raise ValueError(f"velocity_fn returned shape {tuple(out.shape)} for z of shape {tuple(x.shape)}")
        return out

    if solver == "euler":
        for t, t_next in zip(grid[:-1], grid[1:]):
            z = z + (t_next - t) * v_at(z, t)
        return z
    if solver == "heun":
        for t, t_next in zip(grid[:-1], grid[1:]):
            v = v_at(z, t)
            z_euler = z + (t_next - t) * v
            if t_next == 0.0:
                z = z_euler
            else:
                z = z + (t_next - t) * 0.5 * (v + v_at(z_euler, t_next))
        return z
    # DPM-Solver++ (2M) in data prediction.
    x0_prev: torch.Tensor | None = None
    h_prev: float | None = None
    for t, t_next in zip(grid[:-1], grid[1:]):
        x0 = z - t * v_at(z, t)
        if t_next == 0.0:
            return x0
        lam, lam_next = _lam(t), _lam(t_next)
        h = lam_next - lam
        d = x0
        if x0_prev is not None and h_prev is not None and math.isfinite(h_prev):
            r = h_prev / h
            d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_prev
        # z_next = (sigma_next / sigma) z - alpha_next (e^{-h} - 1) D, with sigma = t, alpha = 1 - t.
        z = (t_next / t) * z - (1.0 - t_next) * math.expm1(-h) * d
        x0_prev, h_prev = x0, h
    return z


def _lam(t: float) -> float:
    """log-SNR half: lambda = log(alpha / sigma) = log((1 - t) / t); -inf at t = 1."""
    return -math.inf if t >= 1.0 else math.log((1.0 - t) / t)
