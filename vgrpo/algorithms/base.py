"""The interface between the training loop and a policy-gradient method.

The loop (`vgrpo.trainer.trainer`) owns prompts, rewards, advantages, minibatch chunks, optimizer
steps, parallelism and logging. A strategy owns what differs between methods:
- `rollout`: how an iteration's images are generated and what is kept for the update;
- `prepare`: what is computed once before the update (behaviour scores, the steps to train, ...);
- `chunk_loss`: the policy loss of one chunk of samples (theta's forward, with gradient);
- `nfe`: its cost in model forward evaluations per image, logged as nfe_rollout / nfe_old / nfe_update.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import torch

from vgrpo.models.base import ModelAdapter
from vgrpo.objective import PolicyLoss
from vgrpo.algorithms.config import AlgorithmConfig
from vgrpo.sampling.config import RolloutConfig
from vgrpo.sampling.rollout import RolloutBatch


def guidance_factor(rollout: RolloutConfig) -> int:
    """Forward evaluations per model call: 2 with classifier-free guidance, else 1."""
    return 2 if rollout.cfg_scale != 1.0 else 1


class Algorithm(ABC):
    """One policy-gradient method as the loop drives it (V-GRPO, Flow-GRPO)."""

    name: str

    def __init__(self, cfg: AlgorithmConfig):
        self.cfg = cfg

    @abstractmethod
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
        """G images for each local prompt (prompts[i] has global index prompt_indices[i]).

        `on_chunk(start, stop, x0_chunk)` is called as each chunk of `rollout.batch_size` samples
        is finished (the trainer scores rewards there, overlapping the next chunk).

        Everything random is a function of (seed, iteration, global sample index), so the batch
        does not depend on the number of processes. Returns x0 [Bl, *latent] float32 and whatever
        the update needs (a `RolloutBatch` subclass).
        """

    @abstractmethod
    def prepare(
        self,
        adapter: ModelAdapter,
        batch: RolloutBatch,
        *,
        seed: int,
        iteration: int,
        chunks: list[slice],
        reuse: list[slice],
    ) -> Any:
        """Per-iteration state of the update, computed once before its first optimizer step.

        chunks: every chunk the update will run (same shapes); reuse: the chunks whose old values
        `chunk_loss(take_old_from_self=True)` will fill itself (no behaviour forward for them).
        Collective-safe: every rank calls it with its own batch.
        """

    @abstractmethod
    def chunk_loss(
        self,
        adapter: ModelAdapter,
        batch: RolloutBatch,
        advantages: torch.Tensor,
        state: Any,
        sl: slice,
        *,
        take_old_from_self: bool,
    ) -> tuple[PolicyLoss, torch.Tensor | None]:
        """Policy loss of samples `sl` (mean over them) and an optional [m] per-sample diagnostic
        (V-GRPO: the surrogate L(x0), whose spread the loop logs; None when there is none).

        advantages: [Bl]. take_old_from_self: use this chunk's own detached values as the old ones
        (ratio exactly 1) and store them in `state` for later passes.
        """

    @abstractmethod
    def nfe(self, rollout: RolloutConfig, mu: int, state: Any | None) -> dict[str, float]:
        """Model forward evaluations per image of one iteration (float, averaged over the batch):

        nfe_rollout: the rollout (x2 with classifier-free guidance);
        nfe_old: no-grad behaviour / reference forwards, as executed;
        nfe_update: forwards of theta in the update (their backward is not counted).
        state: the `prepare` result, or None when the iteration skipped its update (then only the
        rollout was run).
        """
