"""Evaluation on a prompt file (text or JSONL with metadata) with any rewards of the registry."""

from __future__ import annotations

from typing import Sequence

import torch

from vgrpo.rewards.base import RewardSet
from vgrpo.tasks.base import Values, reward_summary, reward_values
from vgrpo.utils.prompt_file import PromptRecord


class PromptSetEvaluator:
    """`images_per_prompt` images per prompt record (image j: record j // images_per_prompt), scored
    by `rewards` with the records' metadata. Metrics: "reward/<name>" means over valid images,
    "reward/<name>/<category>" when the metadata has a "category", and "valid_fraction"."""

    def __init__(self, records: Sequence[PromptRecord], rewards: RewardSet, images_per_prompt: int = 1):
        if not records or images_per_prompt < 1:
            raise ValueError("a prompt-set evaluation needs >= 1 prompt and >= 1 image per prompt")
        self.rewards = rewards
        self.prompts = [r.prompt for r in records for _ in range(images_per_prompt)]
        has_metadata = any(r.metadata for r in records)
        self.metadata = [r.metadata for r in records for _ in range(images_per_prompt)] if has_metadata else None
        with_cat = self.metadata is not None and all("category" in m for m in self.metadata)
        self.categories = [str(m["category"]) for m in self.metadata] if with_cat else None
        self.grid_columns = images_per_prompt if images_per_prompt > 1 else 6
        self.headline = tuple(f"reward/{n}" for n in rewards.names)

    def score(self, images: torch.Tensor, indices: Sequence[int]) -> list[Values]:
        meta = None if self.metadata is None else [self.metadata[j] for j in indices]
        return reward_values(self.rewards, images, [self.prompts[j] for j in indices], meta)

    def summarise(self, values: list[Values]) -> dict[str, float]:
        return reward_summary(values, self.categories)
