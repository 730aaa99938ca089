"""The reward interface: any callable (images, prompts) -> [B] scores, several at once with weights.

Per-prompt metadata (the fields of a JSONL prompt file besides "prompt": an OCR target text, a
GenEval-style object list, ...) reaches the rewards that declare a `metadata` keyword:
`__call__(images, prompts, *, metadata: list[dict] | None = None)`, one dict per image (None when
the prompts carry none). `RewardSet` passes it to those rewards only, so plain rewards need not
change.

A reward that raises, or returns NaN/inf for some images, never crashes a run: `RewardSet` scores
the batch, falls back to per-image scoring when the batch call raises, and reports which samples
are valid; the trainer drops invalid samples from their group. Images with NaN/inf pixels are
invalid samples without being scored.
"""

from __future__ import annotations

import inspect
import logging
import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import torch

log = logging.getLogger(__name__)


@runtime_checkable
class Reward(Protocol):
    """Scores images against their prompts.

    __call__(images [B, 3, H, W] float in [0, 1], prompts: list of B str) -> [B] float tensor;
    a reward that needs per-prompt metadata also takes `metadata=` (see the module docstring).
    """

    name: str

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor: ...


@dataclass
class RewardScores:
    """scores: [B, R] float32 (NaN where a reward failed); valid: [B] bool; names: R reward names."""

    scores: torch.Tensor
    valid: torch.Tensor
    names: list[str]

    def per_reward_means(self) -> dict[str, float]:
        """Mean of each reward over the valid samples (for logging)."""
        out = {}
        for j, name in enumerate(self.names):
            col = self.scores[self.valid, j]
            out[name] = float(col.mean()) if col.numel() else math.nan
        return out


@dataclass
class RewardSet:
    """Several rewards with weights; `weights` default to 1 each."""

    rewards: list[Reward]
    weights: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.rewards:
            raise ValueError("RewardSet needs at least one reward")
        if not self.weights:
            self.weights = [1.0] * len(self.rewards)
        if len(self.weights) != len(self.rewards):
            raise ValueError(
                f"got {len(self.weights)} weights for {len(self.rewards)} rewards "
                f"({[r.name for r in self.rewards]})"
            )
        names = [r.name for r in self.rewards]
        if len(set(names)) != len(names):
            raise ValueError(f"reward names must be unique, got {names}")

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.rewards]

    def __call__(
        self, images: torch.Tensor, prompts: Sequence[str], *, metadata: Sequence[dict] | None = None
    ) -> RewardScores:
        """Score a batch with every reward; failures become NaN and mark the sample invalid.

        An image with a NaN/inf pixel is invalid too: it is not shown to any reward (NaN scores).
        metadata: None or one dict per image, passed to the rewards that take `metadata=`.
        """
        b = images.shape[0]
        if metadata is not None and len(metadata) != b:
            raise ValueError(f"got {len(metadata)} metadata entries for {b} images")
        finite = torch.isfinite(images.detach().reshape(b, -1)).all(dim=1).cpu()
        scores = torch.full((b, len(self.rewards)), math.nan)
        keep = finite.nonzero().squeeze(1)
        if len(keep) < b:
            log.warning("%d of %d images have NaN/inf pixels; they are invalid samples", b - len(keep), b)
        if len(keep):
            kept = images if len(keep) == b else images[keep.to(images.device)]
            kept_prompts = prompts if len(keep) == b else [prompts[i] for i in keep.tolist()]
            kept_meta = metadata if metadata is None or len(keep) == b else [metadata[i] for i in keep.tolist()]
            scores[keep] = torch.stack(
                [_score_isolated(r, kept, kept_prompts, kept_meta) for r in self.rewards], dim=1
            )
        valid = torch.isfinite(scores).all(dim=1)
        if not bool(valid.all()):
            log.warning("dropping %d of %d samples with failed rewards", int((~valid).sum()), len(valid))
        return RewardScores(scores=scores, valid=valid, names=self.names)


def takes_metadata(reward: Reward) -> bool:
    """Whether `reward` declares the `metadata` keyword (or **kwargs)."""
    try:
        params = inspect.signature(reward).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature
        return False
    return any(p.name == "metadata" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _call(reward: Reward, images: torch.Tensor, prompts: Sequence[str], metadata: Sequence[dict] | None):
    if metadata is not None and takes_metadata(reward):
        return reward(images, prompts, metadata=list(metadata))
    return reward(images, prompts)


def _score_isolated(
    reward: Reward, images: torch.Tensor, prompts: Sequence[str], metadata: Sequence[dict] | None = None
) -> torch.Tensor:
    """[B] float32 CPU scores; a batch that raises is rescored image by image, failures are NaN."""
    b = images.shape[0]
    try:
        return _as_scores(_call(reward, images, prompts, metadata), b, reward.name)
    except Exception as exc:  # noqa: BLE001 - a reward model must not kill the run
        log.warning("reward %s failed on the batch (%s); scoring images one by one", reward.name, exc)
    out = torch.full((b,), math.nan)
    for i in range(b):
        try:
            one = None if metadata is None else metadata[i : i + 1]
            out[i] = _as_scores(_call(reward, images[i : i + 1], prompts[i : i + 1], one), 1, reward.name)[0]
        except Exception as exc:  # noqa: BLE001
            log.warning("reward %s failed on sample %d: %s", reward.name, i, exc)
    return out


def _as_scores(value: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    value = torch.as_tensor(value).detach().float().cpu().reshape(-1)
    if value.shape[0] != batch:
        raise ValueError(f"reward {name} returned {value.shape[0]} scores for {batch} images")
    return value
