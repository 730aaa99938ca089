"""Timestep-noise pairs for the ELBO surrogate: stratified timesteps, group sharing.

V-GRPO estimates each sample's flow-matching loss with K = N_MC pairs (t_j, eps_j). Two of its
variance-reduction tricks live here:
- stratified timesteps: the (shifted) sigma schedule is cut into K equal contiguous chunks and one
  t is drawn uniformly inside each chunk;
- group-shared pairs: one set of pairs for the whole batch ("batch", the reference code's choice),
  one per prompt group ("group"), or independent pairs per sample ("none", the ablation).
Everything is drawn on the CPU from an explicit generator, so a run is reproducible on any device,
and the trainer draws a fresh set every iteration (and broadcasts it from rank 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vgrpo.utils.schedule import shift_timesteps

SHARING_SCOPES = ("batch", "group", "none")


def sample_timesteps(
    count: int,
    num_pairs: int,
    generator: torch.Generator,
    *,
    stratified: bool = True,
    shift: float = 1.0,
) -> torch.Tensor:
    """Draw `count` rows of `num_pairs` timesteps in (0, 1].

    With stratification, pair j of every row lies in the j-th of `num_pairs` equal chunks of the
    unshifted schedule, u_j in (j / K, (j + 1) / K], then t = shift(u) (so each chunk of the
    shifted schedule gets exactly one t). Without it, u is uniform on (0, 1] for every pair.

    Returns:
        t: [count, num_pairs] float32, ascending along pairs when stratified.
    """
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    draw = torch.rand(count, num_pairs, generator=generator, dtype=torch.float64)
    if stratified:
        index = torch.arange(num_pairs, dtype=torch.float64)
        u = (index + 1.0 - draw) / num_pairs  # in (j/K, (j+1)/K]
    else:
        u = 1.0 - draw  # in (0, 1]
    return shift_timesteps(u, shift).clamp(min=torch.finfo(torch.float32).tiny, max=1.0).float()


@dataclass
class TimestepNoisePairs:
    """One iteration's pairs, in the layouts `vgrpo.ops.elbo_surrogate` accepts.

    t: [K] (batch sharing) or [N, K]; noise: [K, *latent] (batch sharing) or [N, K, *latent].
    """

    t: torch.Tensor
    noise: torch.Tensor

    @property
    def num_pairs(self) -> int:
        return self.t.shape[-1]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TimestepNoisePairs:
        return TimestepNoisePairs(self.t.to(device), self.noise.to(device, dtype))

    def select(self, index: torch.Tensor) -> TimestepNoisePairs:
        """The pairs of the samples in `index` (a minibatch); shared pairs are returned as they are."""
        if self.t.dim() == 1:
            return self
        return TimestepNoisePairs(self.t[index], self.noise[index])


def draw_pairs(
    num_samples: int,
    group_size: int,
    latent_shape: tuple[int, ...],
    num_pairs: int,
    generator: torch.Generator,
    *,
    sharing: str = "batch",
    stratified: bool = True,
    shift: float = 1.0,
) -> TimestepNoisePairs:
    """Draw the timestep-noise pairs for `num_samples` samples laid out in groups of `group_size`.

    Args:
        num_samples: N, a multiple of group_size (samples of a prompt group are contiguous).
        latent_shape: shape of one sample's latent, e.g. (C, H, W) or (tokens, channels).
        num_pairs: K = N_MC.
        generator: a CPU torch.Generator; the draw depends on it alone.
        sharing: "batch" (one set for all), "group" (one per prompt group) or "none".
    Returns:
        TimestepNoisePairs on the CPU in float32.
    """
    if sharing not in SHARING_SCOPES:
        raise ValueError(f"sharing must be one of {SHARING_SCOPES}, got {sharing!r}")
    if group_size < 1 or num_samples % group_size != 0:
        raise ValueError(f"num_samples ({num_samples}) must be a multiple of group_size ({group_size})")
    if sharing == "batch":
        t = sample_timesteps(1, num_pairs, generator, stratified=stratified, shift=shift)[0]
        noise = torch.randn(num_pairs, *latent_shape, generator=generator)
        return TimestepNoisePairs(t, noise)
    draws = num_samples // group_size if sharing == "group" else num_samples
    t = sample_timesteps(draws, num_pairs, generator, stratified=stratified, shift=shift)
    noise = torch.randn(draws, num_pairs, *latent_shape, generator=generator)
    if sharing == "group":
        t = t.repeat_interleave(group_size, dim=0)
        noise = noise.repeat_interleave(group_size, dim=0)
    return TimestepNoisePairs(t, noise)
