"""The built-in world as a task: its evaluation (the held-out split as the prompt set, its exact
verifier as the score: GenEval-style per-category score and accuracy, optionally any rewards beside
it), its training split, and its sample path (`generate_images`: the shapes model's own defaults)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from vgrpo.rewards.base import RewardSet
from vgrpo.sampling.guidance import guided_velocity
from vgrpo.sampling.ode import sample
from vgrpo.tasks.base import Values, reward_summary, reward_values

if TYPE_CHECKING:
    from vgrpo.models.shapes import ShapesAdapter


def train_prompts_by_category() -> dict[str, list[str]]:
    """The world's training split, {category: prompts}: the trainer's prompts when no prompt file is set."""
    from vgrpo.world.prompts import train_prompts_by_category as world_split

    return world_split()


@torch.no_grad()
def generate_images(
    model: ShapesAdapter,
    prompts: Sequence[str],
    seed: int = 0,
    *,
    solver: str | None = None,
    steps: int | None = None,
    shift: float | None = None,
    guidance: float | None = None,
) -> torch.Tensor:
    """Images [B, 3, 32, 32] in [0, 1] for the B `prompts`, from noise [B, 3, 32, 32] drawn by a CPU
    generator seeded `seed`; the ODE solve's settings default to the model's own (`model.sampling`);
    `guidance` is the classifier-free guidance scale, both branches in one batched forward."""
    s = model.sampling
    noise = torch.randn(len(prompts), *model.latent_shape, generator=torch.Generator().manual_seed(seed))
    fn = guided_velocity(model, model.encode_prompts(prompts), s["guidance"] if guidance is None else guidance)
    x0 = sample(
        fn,
        noise.to(model.device),
        steps=s["steps"] if steps is None else steps,
        solver=s["solver"] if solver is None else solver,
        shift=s["shift"] if shift is None else shift,
    )
    return model.decode(x0)


def eval_prompts(by_category: dict[str, list[str]], images_per_category: int) -> list[str]:
    """One prompt per evaluation image: `images_per_category` per category, cycling over its prompts.

    Categories are interleaved (image j belongs to category j mod C), so any prefix, such as the
    sample grid, covers every category.
    """
    cats = [ps for ps in by_category.values() if ps]
    return [ps[i % len(ps)] for i in range(images_per_category) for ps in cats]


def requirement_metrics(values: list[Values], categories: list[str]) -> dict[str, float]:
    """"requirement/<name>": the "overall" of `vgrpo.rewards.shapes.requirement_means` over the
    images' "requirement/<verdict key>" values."""
    from vgrpo.rewards.shapes import requirement_means

    prefix = "requirement/"
    per_image = [{k[len(prefix):]: x for k, x in v.items() if k.startswith(prefix)} for v in values]
    return {prefix + r: m for r, m in requirement_means(per_image, categories)["overall"].items()}


class ShapesEvaluator:
    """Held-out verifier evaluation of the shapes world.

    Metrics: "score/<category>" (mean partial-credit verifier score), "accuracy/<category>"
    (fraction fully satisfied), "score/overall", "accuracy/overall" (means over categories, as
    GenEval reports), "requirement/<count|color|shape|relation>" (each requirement's mean credit,
    averaged over the categories that have it, as `per_category_requirements`: which one holds the
    model back); with `rewards`, also their means as `PromptSetEvaluator` reports them.
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
        values = [{"score": v.score, "accuracy": 1.0 if v.satisfied else 0.0,
                   **{"requirement/" + k: credit for k, credit in v.requirements.items()}}
                  for v in found]
        if self.rewards is not None:
            extra = reward_values(self.rewards, images, prompts, [self.metadata[j] for j in indices])
            values = [{**v, **e} for v, e in zip(values, extra)]
        return values

    def summarise(self, values: list[Values]) -> dict[str, float]:
        from vgrpo.rewards.shapes import category_means

        categories = [m["category"] for m in self.metadata]
        views = {view: category_means([v[view] for v in values], categories) for view in ("score", "accuracy")}
        metrics = {f"{view}/{c}": views[view][c] for c in views["score"] for view in views}
        metrics.update(requirement_metrics(values, categories))
        if self.rewards is not None:
            metrics.update(reward_summary(values, categories))
        return metrics
