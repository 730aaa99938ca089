"""The evaluator interface the trainer calls, and the per-reward scoring both evaluators share.

An evaluation has N images; image j is generated from `prompts[j]` with noise fixed by j, scored
on whichever rank generated it (`score`: per-image values), and the values of all N images, in
image order, are summarised on rank 0 (`summarise`: the metrics written to eval/iter-*.json).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Protocol, Sequence

import torch

from vgrpo.rewards.base import RewardSet

Values = dict[str, float]
"""Per-image values of an evaluator (a verifier score, one score per reward, ...)."""


class Evaluator(Protocol):
    """A fixed evaluation set and how its images are scored.

    prompts: N prompts, one per evaluation image. metadata: N dicts (the prompt's metadata, e.g.
    {"category": ...}), or None. grid_columns: columns of the sample grid. headline: metric keys
    shown on the progress bar.
    """

    prompts: list[str]
    metadata: list[dict] | None
    grid_columns: int
    headline: tuple[str, ...]

    def score(self, images: torch.Tensor, indices: Sequence[int]) -> list[Values]:
        """Per-image values of images [n, 3, H, W] in [0, 1], which are evaluation images `indices`."""
        ...

    def summarise(self, values: list[Values]) -> dict[str, float]:
        """The metrics of the N images' values (image order)."""
        ...


def reward_values(
    rewards: RewardSet, images: torch.Tensor, prompts: Sequence[str], metadata: Sequence[dict] | None
) -> list[Values]:
    """{"reward/<name>": score} per image; NaN for every reward of an invalid sample."""
    scored = rewards(images, prompts, metadata=metadata)
    out = []
    for row, ok in zip(scored.scores.tolist(), scored.valid.tolist()):
        out.append({f"reward/{n}": (v if ok else math.nan) for n, v in zip(scored.names, row)})
    return out


def reward_summary(values: list[Values], categories: Sequence[str] | None = None) -> dict[str, float]:
    """Per reward key: its mean over the valid images ("reward/<name>"), and per category
    ("reward/<name>/<category>") when `categories` (one per image) are given; "valid_fraction"."""
    keys = [k for k in values[0] if k.startswith("reward/")] if values else []
    valid = [all(math.isfinite(v[k]) for k in keys) for v in values]
    out: dict[str, float] = {}
    for k in keys:
        out[k] = _mean([v[k] for v, ok in zip(values, valid) if ok])
    if categories is not None:
        by_cat: dict[str, list[int]] = defaultdict(list)
        for j, c in enumerate(categories):
            by_cat[c].append(j)
        for c, js in by_cat.items():
            for k in keys:
                out[f"{k}/{c}"] = _mean([values[j][k] for j in js if valid[j]])
    out["valid_fraction"] = sum(valid) / max(len(valid), 1)
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan
