"""The built-in task of each model family that has one, by `model.name`.

A run without `eval.prompt_file` is evaluated on its family's built-in task (the shapes world for
the "shapes" model); a family missing here needs a prompt file. A run without `rollout.prompt_file`
trains on its family's `BUILT_IN_TRAINING_PROMPTS` (the shapes world's training split); a family
missing there (flux, sd3) must be given a prompt file, which the config check demands before a model
loads. The trainer reads this module, so it names no task itself.
"""

from __future__ import annotations

from typing import Callable

from vgrpo.rewards.base import RewardSet
from vgrpo.tasks.base import Evaluator


def _shapes(images_per_category: int, rewards: RewardSet | None) -> Evaluator:
    from vgrpo.tasks.shapes import ShapesEvaluator

    return ShapesEvaluator(images_per_category, rewards)


BUILT_IN_EVALUATORS: dict[str, Callable[[int, RewardSet | None], Evaluator]] = {"shapes": _shapes}
"""model.name -> factory(eval.images_per_category, extra rewards or None) of its built-in evaluator."""


def _shapes_training_prompts() -> dict[str, list[str]]:
    from vgrpo.tasks.shapes import train_prompts_by_category

    return train_prompts_by_category()


BUILT_IN_TRAINING_PROMPTS: dict[str, Callable[[], dict[str, list[str]]]] = {"shapes": _shapes_training_prompts}
"""model.name -> {category: prompts} a run trains on when `rollout.prompt_file` is unset (the shapes
world's training split; its held-out split is never trained on)."""
