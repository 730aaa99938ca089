"""The built-in world's evaluation: its held-out split as the prompt set, its exact verifier as the
score (GenEval-style per-category score and accuracy), optionally any rewards beside it."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch

from vgrpo.rewards.base import RewardSet
from vgrpo.tasks.base import Values, reward_summary, reward_values


def train_prompts_by_category() -> dict[str, list[str]]:
    """The world's training split, {category: prompts}: the trainer's prompts when no prompt file is set."""
    from vgrpo.world.prompts import train_prompts_by_category as world_split

    return world_split()


def eval_prompts(by_category: dict[str, list[str]], images_per_category: int) -> list[str]:
    """One prompt per evaluation image: `images_per_category` per category, cycling over its prompts.

    Categories are interleaved (image j belongs to category j mod C), so any prefix, such as the
    sample grid, covers every category.
    """
    cats = [ps for ps in by_category.values() if ps]
    return [ps[i % len(ps)] for i in range(images_per_category) for ps in cats]


class ShapesEvaluator:
    """Held-out verifier evaluation of the shapes world.

    Metrics: "score/<category>" (mean partial-credit verifier score), "accuracy/<category>"
    (fraction fully satisfied), "score/overall", "accuracy/overall" (means over categories, as
    GenEval reports); with `rewards`, also their means as `PromptSetEvaluator` reports them.
    """

    headline = ("score/overall", "accuracy/overall")

    def __init__(self, images_per_category: int, rewards: RewardSet | None = None):
        from vgrpo.world.prompts import category, heldout_prompts_by_category

        by_category = heldout_prompts_by_category()
        self.prompts = eval_prompts(by_category, images_per_category)
        self.metadata = [{"category": category(p)} for p in self.prompts]
        self.grid_columns = len(by_category)
        self.rewards = rewards

    def score(self, images: torch.Tensor, indices: Sequence[int]) -> list[Values]:
        from vgrpo.rewards.shapes import verdicts

        prompts = [self.prompts[j] for j in indices]
        found = verdicts(images.cpu(), prompts)  # the verifier's detector runs on the CPU
        values = [{"score": v.score, "accuracy": 1.0 if v.satisfied else 0.0} for v in found]
        if self.rewards is not None:
            extra = reward_values(self.rewards, images, prompts, [self.metadata[j] for j in indices])
            values = [{**v, **e} for v, e in zip(values, extra)]
        return values

    def summarise(self, values: list[Values]) -> dict[str, float]:
        scores: dict[str, list[float]] = defaultdict(list)
        hits: dict[str, list[float]] = defaultdict(list)
        for meta, v in zip(self.metadata, values):
            scores[meta["category"]].append(v["score"])
            hits[meta["category"]].append(v["accuracy"])
        metrics: dict[str, float] = {}
        for cat in scores:
            metrics[f"score/{cat}"] = sum(scores[cat]) / len(scores[cat])
            metrics[f"accuracy/{cat}"] = sum(hits[cat]) / len(hits[cat])
        cats = list(scores)
        metrics["score/overall"] = sum(metrics[f"score/{c}"] for c in cats) / len(cats)
        metrics["accuracy/overall"] = sum(metrics[f"accuracy/{c}"] for c in cats) / len(cats)
        if self.rewards is not None:
            metrics.update(reward_summary(values, [m["category"] for m in self.metadata]))
        return metrics
