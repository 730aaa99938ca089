"""V-GRPO as a strategy the training loop calls (`vgrpo.algorithms.base.Algorithm`).

The loop owns rewards, optimizer steps and parallelism; this file owns what is specific to the
ELBO-surrogate method:
- `rollout`: the deterministic ODE solver (`vgrpo.sampling.rollout`); only the final samples are kept;
- `draw_pairs`: one iteration's group-shared stratified timestep-noise pairs, drawn on rank 0 from
  the seeded generator and broadcast, so every rank (and any world size) uses the same pairs;
- `score_old`: the no-grad pass of the behaviour policy theta_old over the same chunks (same
  shapes) the update will use, storing the per-pair surrogate and, when beta > 0, the KL target's
  velocity (equivalently its x-prediction): theta_old's own (`kl_target=behaviour`) or the base
  model's, the denoiser with its LoRA adapters disabled (`kl_target=reference`);
  `prepare` = `draw_pairs` + `score_old`;
- `chunk_loss`: forward of theta on one chunk, surrogate, ratio, clipped objective and KL; its
  metrics are the ratio's (`vgrpo.algorithms.clipped_ratio`) and, over the first pass, the spread
  of the per-sample surrogate L(x0): surrogate_mean, surrogate_cv, surrogate_cv_within_group.
With `reuse_first_surrogate`, the first minibatch of an iteration takes its own detached surrogate
as the old one: its ratio is exactly 1 in any precision and it needs no scoring forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

import torch

from vgrpo.algorithms.base import Reduction
from vgrpo.algorithms.clipped_ratio import RATIO_METRICS, ClippedRatioAlgorithm
from vgrpo.algorithms.reference_model import lora_disabled
from vgrpo.models.base import Conditioning, ModelAdapter
from vgrpo.objective import PolicyLoss, TimestepNoisePairs, draw_pairs, surrogate_cv, vgrpo_policy_loss
from vgrpo.ops import ElboTerms, elbo_surrogate, noise_latents
from vgrpo.sampling.guidance import forwards_per_velocity
from vgrpo.sampling.ode import nfe as solver_nfe
from vgrpo.sampling.config import RolloutConfig
from vgrpo.utils.distributed import STREAM_PAIRS, broadcast_, generator
from vgrpo.sampling.rollout import RolloutBatch
from vgrpo.sampling.rollout import rollout as ode_rollout


@dataclass
class OldPolicy:
    """Behaviour-policy quantities for one rank's batch.

    loss: [Bl, K] float32 per-pair surrogate of theta_old; v: [Bl, K, *latent] the KL target's
    velocity (only when beta > 0): theta_old's, or the reference model's. Rows of reused chunks are
    filled by `chunk_loss(take_old_from_self=True)` (the reference's are all filled by `score_old`).
    """

    loss: torch.Tensor
    v: torch.Tensor | None


@dataclass
class VgrpoState:
    """One iteration's update state: the pairs, the behaviour values, how many of this rank's
    Bl samples the scoring pass ran on (the rest are filled by `take_old_from_self`), and the first
    pass's per-sample surrogates L(x0) ((start, stop) -> [m], in chunk order) for the metrics."""

    pairs: TimestepNoisePairs
    old: OldPolicy
    scored_samples: int
    first_pass_surrogates: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)


class VGRPO(ClippedRatioAlgorithm):
    """The V-GRPO objective over an iteration's rollouts (see module docstring)."""

    name = "vgrpo"
    metric_reductions: ClassVar[dict[str, Reduction]] = {
        **RATIO_METRICS, "surrogate_mean": "mean", "surrogate_cv": "mean", "surrogate_cv_within_group": "mean",
    }

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
    ) -> RolloutBatch:
        """Deterministic ODE rollouts (`rollout.solver`, `rollout.steps`); x0 [Bl, *latent] float32."""
        r = rollout
        return ode_rollout(
            adapter, prompts, prompt_indices, iteration=iteration, seed=seed, group_size=r.group_size,
            steps=r.steps, solver=r.solver, shift=r.shift, cfg_scale=r.cfg_scale, batch_size=r.batch_size,
            on_chunk=on_chunk,
        )

    def prepare(
        self,
        adapter: ModelAdapter,
        batch: RolloutBatch,
        *,
        seed: int,
        iteration: int,
        chunks: list[slice],
        reuse: list[slice],
    ) -> VgrpoState:
        """`draw_pairs` for the iteration, then `score_old` over `chunks` except `reuse`."""
        pairs = self.draw_pairs(
            seed=seed, iteration=iteration, num_samples=_global_samples(batch), group_size=batch.group_size,
            latent_shape=tuple(adapter.latent_shape), sample_index=batch.sample_index, device=batch.x0.device,
        )
        old = self.score_old(adapter, batch.x0, batch.cond, pairs, chunks, reuse)
        reused = {(s.start, s.stop) for s in reuse}
        scored = sum(s.stop - s.start for s in chunks if (s.start, s.stop) not in reused)
        return VgrpoState(pairs=pairs, old=old, scored_samples=scored)

    def nfe(self, rollout: RolloutConfig, mu: int, state: VgrpoState | None) -> dict[str, float]:
        """nfe_rollout = solver NFE (x2 with CFG); nfe_old = N_MC x scored fraction (+ N_MC for the
        reference KL's forwards); nfe_update = mu x N_MC."""
        rollout_nfe = solver_nfe(rollout.solver, rollout.steps) * forwards_per_velocity(rollout.cfg_scale)
        out = {"nfe_rollout": float(rollout_nfe)}
        if state is None:
            return {**out, "nfe_old": 0.0, "nfe_update": 0.0}
        k, bl = state.pairs.num_pairs, state.old.loss.shape[0]
        reference = k if self._kl_to_reference else 0
        return {**out, "nfe_old": k * state.scored_samples / bl + reference, "nfe_update": float(mu * k)}

    # ------------------------------------------------------------------ pairs
    def draw_pairs(
        self,
        *,
        seed: int,
        iteration: int,
        num_samples: int,
        group_size: int,
        latent_shape: tuple[int, ...],
        sample_index: torch.Tensor,
        device: torch.device,
    ) -> TimestepNoisePairs:
        """This rank's pairs: drawn for the global batch on rank 0, broadcast, local rows selected.

        Returns pairs with t [K] / noise [K, *latent] (batch sharing) or t [Bl, K] /
        noise [Bl, K, *latent] on `device`.
        """
        c = self.cfg
        pairs = draw_pairs(
            num_samples, group_size, latent_shape, c.num_pairs, generator(seed, STREAM_PAIRS, iteration),
            sharing=c.sharing, stratified=c.stratified, shift=c.timestep_shift,
        )
        # Rank 0's draw is the truth: broadcast it so ranks agree even if a generator diverged.
        comm = device if torch.distributed.is_initialized() and torch.distributed.get_backend() == "nccl" else "cpu"
        t = broadcast_(pairs.t.to(comm))
        noise = broadcast_(pairs.noise.to(comm))
        pairs = TimestepNoisePairs(t, noise)
        if pairs.t.dim() == 2:
            pairs = pairs.select(sample_index.to(pairs.t.device))
        return pairs.to(device)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        adapter: ModelAdapter,
        x0: torch.Tensor,
        cond: Conditioning,
        pairs: TimestepNoisePairs,
    ) -> torch.Tensor:
        """Velocity at every (sample, pair) of a chunk.

        Args:
            x0: [m, *latent] float32; cond: batch m; pairs: shared or already [m, K] rows.
        Returns:
            v: [m, K, *latent] in the denoiser's compute dtype.
        """
        m, k = x0.shape[0], pairs.num_pairs
        z = noise_latents(x0, pairs.noise, pairs.t)
        t = pairs.t.expand(m, k) if pairs.t.dim() == 1 else pairs.t
        v = adapter.velocity(z.flatten(0, 1), t.reshape(-1), cond.repeat_interleave(k))
        return v.unflatten(0, (m, k))

    def terms(
        self, v: torch.Tensor, x0: torch.Tensor, pairs: TimestepNoisePairs, v_old: torch.Tensor | None = None
    ) -> ElboTerms:
        """[m, K] float32 surrogate terms (fused op; no value checks in the hot loop).

        v (and v_old) come in the model's compute dtype and are read in x0's dtype (float32), so
        the surrogate of a bf16 model is still float32 arithmetic on float32 samples.
        """
        v = v.to(x0.dtype)
        v_old = v_old.to(x0.dtype) if v_old is not None else None
        return elbo_surrogate(
            v, x0, pairs.noise.to(x0.dtype), pairs.t, v_old=v_old, weighting=self.cfg.weighting,
            check_values=False,
        )

    # ------------------------------------------------------------------ behaviour scoring
    @torch.no_grad()
    def score_old(
        self,
        adapter: ModelAdapter,
        x0: torch.Tensor,
        cond: Conditioning,
        pairs: TimestepNoisePairs,
        chunks: list[slice],
        skip: list[slice],
    ) -> OldPolicy:
        """No-grad pass of theta_old over `chunks` (the update's own chunks), except those in `skip`.

        With beta > 0 and `kl_target=reference`, every chunk (skipped ones too) also gets a forward of
        the reference model (LoRA adapters disabled), stored as the KL target.

        Args:
            x0: [Bl, *latent]; cond: batch Bl; pairs: shared or [Bl, K] rows.
        Returns:
            OldPolicy with loss [Bl, K] (and v [Bl, K, *latent] when beta > 0).
        """
        bl, k = x0.shape[0], pairs.num_pairs
        old = OldPolicy(loss=torch.zeros(bl, k, device=x0.device), v=None)
        skipped = {(s.start, s.stop) for s in skip}
        for sl in chunks:
            p = pairs.select(torch.arange(sl.start, sl.stop, device=x0.device))
            if self._kl_to_reference:
                with lora_disabled(adapter.denoiser):
                    self._store_kl_target(old, sl, self.forward(adapter, x0[sl], cond.index(sl), p))
            if (sl.start, sl.stop) in skipped:
                continue
            v = self.forward(adapter, x0[sl], cond.index(sl), p)
            self._store(old, sl, self.terms(v, x0[sl], p).loss, v)
        return old

    @property
    def _kl_to_reference(self) -> bool:
        return self.cfg.beta > 0 and self.cfg.kl_target == "reference"

    def _store(self, old: OldPolicy, sl: slice, loss: torch.Tensor, v: torch.Tensor) -> None:
        """Keep theta_old's per-pair surrogate of `sl` and, for the behaviour KL, its velocity."""
        old.loss[sl] = loss.detach()
        if self.cfg.beta > 0 and not self._kl_to_reference:
            self._store_kl_target(old, sl, v)

    @staticmethod
    def _store_kl_target(old: OldPolicy, sl: slice, v: torch.Tensor) -> None:
        if old.v is None:
            old.v = torch.zeros(old.loss.shape[0], *v.shape[1:], dtype=v.dtype, device=v.device)
        old.v[sl] = v.detach()

    # ------------------------------------------------------------------ update
    def iteration_metrics(self, batch: RolloutBatch, state: VgrpoState) -> dict[str, torch.Tensor]:
        """Mean and coefficients of variation (`surrogate_cv`) of this rank's first-pass L(x0)."""
        surrogates = torch.cat(list(state.first_pass_surrogates.values()))
        cv = surrogate_cv(surrogates, batch.group_size)
        return {"surrogate_mean": surrogates.mean(), "surrogate_cv": cv["cv"],
                "surrogate_cv_within_group": cv["cv_within_group"]}

    def policy_loss(
        self,
        adapter: ModelAdapter,
        batch: RolloutBatch,
        advantages: torch.Tensor,
        state: VgrpoState,
        sl: slice,
        *,
        take_old_from_self: bool,
    ) -> PolicyLoss:
        """Policy loss of one chunk (mean over its samples); ratio [m].

        `take_old_from_self`: this chunk's old values are its own detached forward (first
        minibatch of an iteration with `reuse_first_surrogate`); they are stored for later passes.
        The chunk's [m] surrogate L(x0) of its first visit (the first pass) is kept in `state`.
        """
        c = self.cfg
        x0, cond, pairs, old = batch.x0, batch.cond, state.pairs, state.old
        p = pairs.select(torch.arange(sl.start, sl.stop, device=x0.device))
        v = self.forward(adapter, x0[sl], cond.index(sl), p)
        if take_old_from_self:
            self._store(old, sl, torch.zeros_like(old.loss[sl]), v)  # behaviour KL target; loss filled below
        v_old = old.v[sl] if (c.beta > 0 and old.v is not None) else None
        terms = self.terms(v, x0[sl], p, v_old=v_old)
        if take_old_from_self:
            old.loss[sl] = terms.loss.detach()
        state.first_pass_surrogates.setdefault((sl.start, sl.stop), terms.loss.detach().mean(1))
        return vgrpo_policy_loss(
            terms.loss,
            old.loss[sl],
            advantages[sl],
            clip_range=c.clip_range if c.clip_range > 0 else None,
            pair_kl=terms.kl,
            beta=c.beta,
        )


def _global_samples(batch: RolloutBatch) -> int:
    """P * G of the whole iteration (all ranks): the pairs are drawn for the global batch."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return batch.size * torch.distributed.get_world_size()
    return batch.size
