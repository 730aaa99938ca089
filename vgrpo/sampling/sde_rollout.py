"""SDE rollouts for the MDP baseline (Flow-GRPO): G images per prompt, every step and its log-prob kept.

Same layout as the ODE rollout (`vgrpo.sampling.rollout`): sample g of prompt p has global index
p * G + g, its initial noise comes from the same seeded stream as the ODE rollout's, and the noise
of its SDE steps from a generator seeded by (seed, iteration, global index). One process and W
processes therefore draw the same trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from vgrpo.models.base import ModelAdapter
from vgrpo.sampling.guidance import guided_velocity
from vgrpo.sampling.sde import sample_sde, sde_timesteps
from vgrpo.utils.distributed import STREAM_SDE_NOISE
from vgrpo.sampling.rollout import RolloutBatch, group_inputs, initial_noise


@dataclass
class SdeRolloutBatch(RolloutBatch):
    """One rank's share of an iteration's SDE rollouts (the fields of `RolloutBatch`, plus):

    latents: [Bl, T + 1, *latent] float32, x_0 = noise at t = 1 ... x_T = the sample (= `x0`);
    log_probs: [Bl, T] float32, log-prob of the transition x_j -> x_{j+1} under the rollout policy
    (mean over latent elements, `vgrpo.sampling.sde.gaussian_log_prob`);
    timesteps: [T + 1] float64 CPU grid from 1 down to 0 (`sde_timesteps`);
    noise_level: a in sigma_t = a sqrt(t / (1 - t)); cfg_scale: the guidance the rollout used.
    """

    latents: torch.Tensor
    log_probs: torch.Tensor
    timesteps: torch.Tensor
    noise_level: float
    cfg_scale: float

    @property
    def steps(self) -> int:
        return self.log_probs.shape[1]


def step_noise(
    latent_shape: tuple[int, ...], steps: int, seed: int, iteration: int, indices: torch.Tensor
) -> torch.Tensor:
    """[steps, N, *latent] float32 CPU standard normal; sample i's noise comes from
    generator(seed, STREAM_SDE_NOISE, iteration, indices[i])."""
    return initial_noise((steps, *latent_shape), seed, STREAM_SDE_NOISE, iteration, indices).transpose(0, 1)


@torch.no_grad()
def sde_rollout(
    adapter: ModelAdapter,
    prompts: Sequence[str],
    prompt_indices: Sequence[int],
    *,
    iteration: int,
    seed: int,
    group_size: int,
    steps: int,
    shift: float,
    noise_level: float,
    cfg_scale: float = 1.0,
    batch_size: int = 64,
    on_chunk: Callable[[int, int, torch.Tensor], None] | None = None,
) -> SdeRolloutBatch:
    """G SDE trajectories for each local prompt (prompts[i] has global index prompt_indices[i]).

    `batch_size` images per sampler call (a memory knob: the result does not depend on it beyond
    floating-point batching effects). `on_chunk(start, stop, x0_chunk)` sees each finished chunk's
    samples [stop - start, *latent] (e.g. to score them while the next chunk runs). With
    cfg_scale != 1, classifier-free guidance (`vgrpo.sampling.guidance`) in one batched forward of
    2 x batch_size rows, as Flow-GRPO's update evaluates it.
    """
    cond, index, noise = group_inputs(
        adapter, prompts, prompt_indices, group_size=group_size, seed=seed, iteration=iteration
    )
    device = adapter.device
    latents, log_probs = [], []
    for start in range(0, index.numel(), batch_size):
        sl = slice(start, min(start + batch_size, index.numel()))
        trajectory = sample_sde(
            guided_velocity(adapter, cond.index(sl), cfg_scale), noise[sl].to(device), steps=steps, shift=shift,
            noise_level=noise_level,
            step_noise=step_noise(tuple(adapter.latent_shape), steps, seed, iteration, index[sl]),
        )
        latents.append(trajectory.latents.transpose(0, 1))
        log_probs.append(trajectory.log_probs.transpose(0, 1))
        if on_chunk is not None:
            on_chunk(sl.start, sl.stop, trajectory.sample)
    latents_all = torch.cat(latents)
    return SdeRolloutBatch(
        prompts=[p for p in prompts for _ in range(group_size)], cond=cond, x0=latents_all[:, -1],
        sample_index=index, group_size=group_size, latents=latents_all, log_probs=torch.cat(log_probs),
        timesteps=sde_timesteps(steps, shift), noise_level=noise_level, cfg_scale=cfg_scale,
    )
