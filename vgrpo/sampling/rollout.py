"""Rollouts: G images per prompt with a deterministic ODE solver, laid out so every rank owns
whole prompt groups of every minibatch and the global batch does not depend on the world size.

Layout: an iteration has P prompts (global indices 0..P-1), split into `minibatches` contiguous
blocks of Pm = P / minibatches prompts; rank r owns the r-th contiguous 1/W slice of each block.
Sample g of prompt p has global index p * G + g. Its initial noise comes from a generator seeded by
(seed, iteration, global index), so one process and W processes draw the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from vgrpo.models.base import Conditioning, ModelAdapter
from vgrpo.sampling.guidance import guided_velocity
from vgrpo.sampling.ode import sample
from vgrpo.utils.distributed import STREAM_ROLLOUT_NOISE, generator


def local_prompt_indices(num_prompts: int, world_size: int, rank: int, minibatches: int) -> list[int]:
    """Global prompt indices owned by `rank`, in local order (minibatch by minibatch)."""
    per_block = num_prompts // minibatches
    per_rank = per_block // world_size
    if per_rank * world_size * minibatches != num_prompts:
        raise ValueError(
            f"{num_prompts} prompts cannot be split into {minibatches} minibatches x {world_size} ranks"
        )
    return [b * per_block + rank * per_rank + i for b in range(minibatches) for i in range(per_rank)]


def sample_indices(prompt_indices: Sequence[int], group_size: int) -> torch.Tensor:
    """[len(prompt_indices) * G] global sample indices p * G + g, groups contiguous."""
    p = torch.as_tensor(list(prompt_indices), dtype=torch.long)
    return (p[:, None] * group_size + torch.arange(group_size)).reshape(-1)


def initial_noise(
    latent_shape: tuple[int, ...], seed: int, stream: int, key: int, indices: torch.Tensor
) -> torch.Tensor:
    """[N, *latent] float32 CPU noise, sample i drawn from generator(seed, stream, key, indices[i])."""
    return torch.stack(
        [torch.randn(latent_shape, generator=generator(seed, stream, key, int(i))) for i in indices.tolist()]
    )


@dataclass
class RolloutBatch:
    """One rank's share of an iteration's rollouts.

    prompts: Bl prompt strings (each repeated G times, groups contiguous);
    cond: conditioning with batch Bl; x0: [Bl, *latent] float32 final samples;
    sample_index: [Bl] global sample indices; group_size: G.
    """

    prompts: list[str]
    cond: Conditioning
    x0: torch.Tensor
    sample_index: torch.Tensor
    group_size: int

    @property
    def size(self) -> int:
        return self.x0.shape[0]


@torch.no_grad()
def generate(
    adapter: ModelAdapter,
    cond: Conditioning,
    noise: torch.Tensor,
    *,
    steps: int,
    solver: str,
    shift: float,
    cfg_scale: float = 1.0,
    batch_size: int = 64,
    on_chunk: Callable[[int, int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Integrate the probability-flow ODE from `noise` to samples, `batch_size` images per call.

    With cfg_scale != 1, classifier-free guidance (`vgrpo.sampling.guidance`) in two forwards per
    velocity, unconditional first: no forward is larger than `batch_size` rows.

    Args:
        cond: conditioning with batch N; noise: [N, *latent] (any device; moved to the model's).
        on_chunk: called as on_chunk(start, stop, x0 [stop - start, *latent] float32) as soon as a
            chunk is sampled (e.g. to score it on a worker thread while the next chunk runs).
    Returns:
        x0: [N, *latent] float32 on the model's device.
    """
    device = adapter.device
    out = []
    for start in range(0, noise.shape[0], batch_size):
        stop = min(start + batch_size, noise.shape[0])
        fn = guided_velocity(adapter, cond.index(slice(start, stop)), cfg_scale, batched=False)
        z = noise[start:stop].to(device)
        out.append(sample(fn, z, steps=steps, solver=solver, shift=shift).float())
        if on_chunk is not None:
            on_chunk(start, stop, out[-1])
    return torch.cat(out)


def group_inputs(
    adapter: ModelAdapter, prompts: Sequence[str], prompt_indices: Sequence[int], *, group_size: int,
    seed: int, iteration: int,
) -> tuple[Conditioning, torch.Tensor, torch.Tensor]:
    """What every rollout of local prompts starts from, whatever its sampler:

    cond: conditioning with batch Bl = len(prompts) * G (groups contiguous); index: [Bl] global
    sample indices; noise: [Bl, *latent] float32 CPU initial noise at t = 1, sample i drawn from
    generator(seed, rollout stream, iteration, index[i]).
    """
    cond = adapter.encode_prompts(list(prompts)).repeat_interleave(group_size)
    index = sample_indices(prompt_indices, group_size)
    noise = initial_noise(adapter.latent_shape, seed, STREAM_ROLLOUT_NOISE, iteration, index)
    return cond, index, noise


def rollout(
    adapter: ModelAdapter,
    prompts: Sequence[str],
    prompt_indices: Sequence[int],
    *,
    iteration: int,
    seed: int,
    group_size: int,
    steps: int,
    solver: str,
    shift: float,
    cfg_scale: float = 1.0,
    batch_size: int = 64,
    on_chunk: Callable[[int, int, torch.Tensor], None] | None = None,
) -> RolloutBatch:
    """Generate G images for each local prompt (prompts[i] has global index prompt_indices[i]).

    `on_chunk(start, stop, x0_chunk)` sees each finished chunk of samples (see `generate`); sample
    i of the batch belongs to prompt i // G.
    """
    cond, index, noise = group_inputs(
        adapter, prompts, prompt_indices, group_size=group_size, seed=seed, iteration=iteration
    )
    x0 = generate(
        adapter, cond, noise, steps=steps, solver=solver, shift=shift, cfg_scale=cfg_scale,
        batch_size=batch_size, on_chunk=on_chunk,
    )
    sample_prompts = [p for p in prompts for _ in range(group_size)]
    return RolloutBatch(prompts=sample_prompts, cond=cond, x0=x0, sample_index=index, group_size=group_size)
