"""Flow-GRPO (arXiv 2505.05470), the MDP baseline, as a strategy the training loop calls.

Every SDE step is an action (method.md section 8):
- `rollout`: the marginal-preserving SDE (`vgrpo.sampling.sde_rollout`), keeping every latent and
  every step's Gaussian log-prob under the rollout (behaviour) policy;
- `prepare`: this iteration's subset of steps to train (`algorithm.sde_train_steps` of the
  `rollout.steps`, drawn from a generator seeded by (seed, iteration): the same on every rank);
  the old log-probs are the stored ones, nothing is re-scored;
- `chunk_loss`: one batched forward of theta over the chunk's samples x trained steps, the log-prob
  of each stored transition x_j -> x_{j+1}, per-step ratio, PPO clipping (`flowgrpo_policy_loss`),
  and with beta > 0 the KL to the reference model, i.e. the same denoiser with its LoRA adapters
  disabled (no second copy of the model), as in Flow-GRPO's reference code:
      kl_ij = mean_d (mean_theta - mean_ref)^2 / (2 sigma_j^2),  sigma_j = a sqrt(t_j / (1 - t_j)).
  (Flow-GRPO divides by the SDE's sigma_j^2, not by the transition variance sigma_j^2 |dt_j|: its
  "KL" is the exact Gaussian KL of the step times |dt_j|.) Its metrics are the per-step ratio's
  (`vgrpo.algorithms.clipped_ratio`).
With `reuse_first_surrogate`, the first minibatch takes its own detached log-probs as the old ones
(ratio exactly 1 in any precision); the others use the rollout's stored log-probs, as Flow-GRPO does
(their first ratio is 1 up to the batching of the rollout's and the update's forwards).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from vgrpo.algorithms.clipped_ratio import ClippedRatioAlgorithm
from vgrpo.algorithms.reference_model import lora_disabled
from vgrpo.models.base import ModelAdapter
from vgrpo.objective import PolicyLoss
from vgrpo.objective.flowgrpo_loss import flowgrpo_policy_loss
from vgrpo.sampling.sde import gaussian_log_prob, sde_step_mean_std
from vgrpo.sampling.config import RolloutConfig
from vgrpo.utils.distributed import STREAM_SDE_STEPS, generator
from vgrpo.sampling.guidance import forwards_per_velocity, guided_velocity
from vgrpo.sampling.sde_rollout import SdeRolloutBatch, sde_rollout


def trained_steps(seed: int, iteration: int, steps: int, count: int) -> torch.Tensor:
    """[S] sorted step indices in [0, steps) trained this iteration; S = count, or all when count = 0.

    A function of (seed, iteration) only: every rank and every world size picks the same steps.
    """
    if not 0 <= count <= steps:
        raise ValueError(f"count must be in [0, steps={steps}], got {count}")
    if count in (0, steps):
        return torch.arange(steps)
    order = torch.randperm(steps, generator=generator(seed, STREAM_SDE_STEPS, iteration))
    return order[:count].sort().values


@dataclass
class FlowGrpoState:
    """steps: [S] trained step indices (CPU long); log_probs_old: [Bl, S] float32 behaviour log-probs
    of those steps (the rollout's, overwritten per chunk by `take_old_from_self`)."""

    steps: torch.Tensor
    log_probs_old: torch.Tensor


@dataclass
class StepTransitions:
    """Theta's (and the reference's) Gaussian transitions at a chunk's trained steps.

    log_prob: [m, S] float32 log-prob of the stored x_{j+1}; mean: [m, S, *latent] float32;
    mean_ref: same shape under the reference model, or None; sigma_sq: [S] float64 sigma_j^2.
    """

    log_prob: torch.Tensor
    mean: torch.Tensor
    mean_ref: torch.Tensor | None
    sigma_sq: torch.Tensor


class FlowGRPO(ClippedRatioAlgorithm):
    """The Flow-GRPO objective over an iteration's SDE rollouts (see module docstring)."""

    name = "flowgrpo"

    # ------------------------------------------------------------------ rollout
    def rollout(
        self,
        adapter: ModelAdapter,
        prompts: Sequence[str],
        prompt_indices: Sequence[int],
        *,
        iteration: int,
        seed: int,
        rollout: RolloutConfig,
        on_chunk: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> SdeRolloutBatch:
        """SDE rollouts with `rollout.steps` steps and noise level `algorithm.sde_noise_level`."""
        r = rollout
        return sde_rollout(
            adapter, prompts, prompt_indices, iteration=iteration, seed=seed, group_size=r.group_size,
            steps=r.steps, shift=r.shift, noise_level=self.cfg.sde_noise_level, cfg_scale=r.cfg_scale,
            batch_size=r.batch_size, on_chunk=on_chunk,
        )

    def prepare(
        self,
        adapter: ModelAdapter,
        batch: SdeRolloutBatch,
        *,
        seed: int,
        iteration: int,
        chunks: list[slice],
        reuse: list[slice],
    ) -> FlowGrpoState:
        """The iteration's trained steps and their stored log-probs (no forward pass)."""
        steps = trained_steps(seed, iteration, batch.steps, self.cfg.sde_train_steps)
        old = batch.log_probs[:, steps.to(batch.log_probs.device)]  # a copy (advanced indexing)
        return FlowGrpoState(steps=steps, log_probs_old=old)

    def nfe(self, rollout: RolloutConfig, mu: int, state: FlowGrpoState | None) -> dict[str, float]:
        """nfe_rollout = steps; nfe_old = the reference's mu x S when beta > 0; nfe_update = mu x S
        (every term x2 with classifier-free guidance, which the update evaluates too)."""
        guidance = forwards_per_velocity(rollout.cfg_scale)
        out = {"nfe_rollout": float(rollout.steps * guidance)}
        if state is None:
            return {**out, "nfe_old": 0.0, "nfe_update": 0.0}
        update = float(mu * state.steps.numel() * guidance)
        return {**out, "nfe_old": update if self.cfg.beta > 0 else 0.0, "nfe_update": update}

    # ------------------------------------------------------------------ log-probs
    def transitions(
        self, adapter: ModelAdapter, batch: SdeRolloutBatch, steps: torch.Tensor, sl: slice, *, with_reference: bool
    ) -> StepTransitions:
        """Log-probs of the stored transitions x_j -> x_{j+1} of samples `sl` at `steps` under theta.

        One batched forward over m x S (sample, step) rows (x2 with guidance); with_reference adds a
        no-grad forward of the same rows with the LoRA adapters disabled.
        """
        m, s = sl.stop - sl.start, steps.numel()
        device = batch.latents.device
        idx = steps.to(device)
        x = batch.latents[sl][:, idx]  # [m, S, *latent]
        x_next = batch.latents[sl][:, idx + 1]
        grid = batch.timesteps
        t_rows = grid[steps].float().to(device).expand(m, s).reshape(-1)
        guided = guided_velocity(adapter, batch.cond.index(sl).repeat_interleave(s), batch.cfg_scale)

        def velocity() -> torch.Tensor:
            return guided(x.flatten(0, 1), t_rows).unflatten(0, (m, s))

        v_ref = None
        if with_reference:
            with torch.no_grad(), lora_disabled(adapter.denoiser):
                v_ref = velocity()
        v = velocity()
        t_cap = float(grid[1])
        log_probs, means, means_ref, sigma_sq = [], [], [], []
        for k, j in enumerate(steps.tolist()):
            t, t_next = float(grid[j]), float(grid[j + 1])
            mean, std = sde_step_mean_std(x[:, k], v[:, k], t, t_next, t_cap, batch.noise_level)
            log_probs.append(gaussian_log_prob(x_next[:, k], mean, std))
            means.append(mean)
            sigma_sq.append(std**2 / (t - t_next))
            if v_ref is not None:
                means_ref.append(sde_step_mean_std(x[:, k], v_ref[:, k], t, t_next, t_cap, batch.noise_level)[0])
        return StepTransitions(
            log_prob=torch.stack(log_probs, 1),
            mean=torch.stack(means, 1),
            mean_ref=torch.stack(means_ref, 1) if v_ref is not None else None,
            sigma_sq=torch.tensor(sigma_sq, dtype=torch.float64),
        )

    # ------------------------------------------------------------------ update
    def policy_loss(
        self,
        adapter: ModelAdapter,
        batch: SdeRolloutBatch,
        advantages: torch.Tensor,
        state: FlowGrpoState,
        sl: slice,
        *,
        take_old_from_self: bool,
    ) -> PolicyLoss:
        """Clipped per-step objective of samples `sl` (mean over samples and trained steps), plus
        beta x KL to the reference model; ratio [m x S] (sample-major)."""
        c = self.cfg
        tr = self.transitions(adapter, batch, state.steps, sl, with_reference=c.beta > 0)
        if take_old_from_self:
            state.log_probs_old[sl] = tr.log_prob.detach()
        step_kl = None
        if tr.mean_ref is not None:
            sq = (tr.mean - tr.mean_ref).square().flatten(2).mean(2)  # [m, S]
            step_kl = sq / (2.0 * tr.sigma_sq.to(sq.device, sq.dtype))
        out = flowgrpo_policy_loss(
            tr.log_prob, state.log_probs_old[sl], advantages[sl],
            clip_range=c.clip_range if c.clip_range > 0 else None, step_kl=step_kl, beta=c.beta,
        )
        return out
