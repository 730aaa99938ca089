"""The interface between the training loop and a policy-gradient method.

The loop (`vgrpo.trainer.trainer`) owns prompts, rewards, advantages, minibatch chunks, optimizer
steps, parallelism and logging. A strategy owns what differs between methods:
- `rollout`: how an iteration's images are generated and what is kept for the update;
- `prepare`: what is computed once before the update (behaviour scores, the steps to train, ...);
- `chunk_loss`: the policy loss of one chunk of samples (theta's forward, with gradient) and the
  chunk's metrics, each reduced over the iteration's chunks and the ranks as `metric_reductions`
  declares; `iteration_metrics`: those only the whole iteration gives; `progress`: what the
  progress bar shows of them. The loop logs what it receives and adds no metric of a method's own
  (an algorithm without an importance ratio reports none);
- `nfe`: its cost in model forward evaluations per image, logged as nfe_rollout / nfe_old / nfe_update.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal, Sequence

import torch

from vgrpo.models.base import ModelAdapter
from vgrpo.algorithms.config import AlgorithmConfig
from vgrpo.sampling.config import RolloutConfig
from vgrpo.sampling.rollout import RolloutBatch

Reduction = Literal["mean", "max", "min"]
REDUCTIONS: tuple[Reduction, ...] = ("mean", "max", "min")


@dataclass
class ChunkLoss:
    """What `Algorithm.chunk_loss` returns for one chunk of samples.

    loss: scalar to minimise (with gradient), the mean over the chunk's samples;
    metrics: name -> scalar tensor (detached, on any device: no host sync until the iteration's
    one reduction), every name declared in the algorithm's `metric_reductions`.
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


class Algorithm(ABC):
    """One policy-gradient method as the loop drives it (V-GRPO, Flow-GRPO).

    metric_reductions: every metric the algorithm reports (`ChunkLoss.metrics`,
    `iteration_metrics`) -> how the loop reduces its values over the chunks of an iteration and
    then over the ranks: "mean", "max" or "min". Logged under these names in metrics.jsonl,
    TensorBoard and W&B.
    """

    name: str
    metric_reductions: ClassVar[dict[str, Reduction]] = {}

    def __init__(self, cfg: AlgorithmConfig):
        for metric, how in self.metric_reductions.items():
            if how not in REDUCTIONS:
                raise ValueError(f"algorithm {self.name!r} declares metric {metric!r} with reduction {how!r}; "
                                 f"reductions are {'|'.join(REDUCTIONS)}")
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
        epoch: int,
        minibatch: int,
    ) -> ChunkLoss:
        """Policy loss of samples `sl` (mean over them) and the chunk's metrics.

        advantages: [Bl]. take_old_from_self: use this chunk's own detached values as the old ones
        (ratio exactly 1) and store them in `state` for later passes. epoch (0..mu-1) and minibatch
        (0..minibatches-1): where the chunk sits in the update (epoch 0, minibatch 0 is the first
        optimizer step, before theta has moved).
        """

    def iteration_metrics(self, batch: RolloutBatch, state: Any) -> dict[str, torch.Tensor]:
        """Metrics only the whole iteration gives (e.g. a spread over all of this rank's samples),
        after its last chunk: name -> scalar tensor, reduced over the ranks as declared. None by default."""
        return {}

    def progress(self, metrics: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows of an iteration's reduced metrics: label -> text. None by default."""
        return {}

    @abstractmethod
    def nfe(self, rollout: RolloutConfig, mu: int, state: Any | None) -> dict[str, float]:
        """Model forward evaluations per image of one iteration (float, averaged over the batch):

        nfe_rollout: the rollout (x2 with classifier-free guidance);
        nfe_old: no-grad behaviour / reference forwards, as executed;
        nfe_update: forwards of theta in the update (their backward is not counted).
        state: the `prepare` result, or None when the iteration skipped its update (then only the
        rollout was run).
        """
