"""The clipped-ratio (PPO-style) methods, V-GRPO and Flow-GRPO: a policy loss on an importance
ratio, and what they report about that ratio.

Per chunk: the `PolicyLoss` metrics (clip_fraction, policy_loss, log_ratio_std, kl when computed)
and the ratio's mean, min and max; over the first minibatch of an iteration (theta not yet moved),
ratio_first_absdev = max |ratio - 1|, exactly 0 when that minibatch takes its own old values.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch

from vgrpo.algorithms.base import Algorithm, ChunkLoss, Reduction
from vgrpo.models.base import ModelAdapter
from vgrpo.objective import PolicyLoss
from vgrpo.sampling.rollout import RolloutBatch

RATIO_METRICS: dict[str, Reduction] = {
    "clip_fraction": "mean",
    "policy_loss": "mean",
    "kl": "mean",
    "log_ratio_std": "mean",
    "ratio_mean": "mean",
    "ratio_min": "min",
    "ratio_max": "max",
    "ratio_first_absdev": "max",
}
_LOSS_METRICS = ("clip_fraction", "policy_loss", "kl", "log_ratio_std")


class ClippedRatioAlgorithm(Algorithm):
    """An `Algorithm` whose loss is PPO's clipped objective on an importance ratio (`policy_loss`)."""

    metric_reductions: ClassVar[dict[str, Reduction]] = RATIO_METRICS

    @abstractmethod
    def policy_loss(
        self,
        adapter: ModelAdapter,
        batch: RolloutBatch,
        advantages: torch.Tensor,
        state: Any,
        sl: slice,
        *,
        take_old_from_self: bool,
    ) -> PolicyLoss:
        """The chunk's clipped objective with its ratio (the arguments of `chunk_loss`)."""

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
        """`policy_loss` and the chunk's ratio metrics (scalar tensors, no host sync)."""
        out = self.policy_loss(adapter, batch, advantages, state, sl, take_old_from_self=take_old_from_self)
        ratio = out.ratio.detach()
        metrics = {k: out.metrics[k] for k in _LOSS_METRICS if k in out.metrics}
        metrics.update(ratio_mean=ratio.mean(), ratio_min=ratio.min(), ratio_max=ratio.max())
        if epoch == 0 and minibatch == 0:
            metrics["ratio_first_absdev"] = (ratio - 1.0).abs().max()
        return ChunkLoss(out.loss, metrics)

    def progress(self, metrics: dict[str, float]) -> dict[str, str]:
        """ratio=[min,max] and clip=fraction."""
        return {
            "ratio": f"[{metrics.get('ratio_min', 1):.4f},{metrics.get('ratio_max', 1):.4f}]",
            "clip": f"{metrics.get('clip_fraction', 0):.2f}",
        }
