"""The shapes-world verifier reward: exact, GenEval-style, with partial credit.

`score(images, prompts)` detects the objects in each image (`vgrpo.world.detect`) and scores them
against the parsed prompt (`vgrpo.world.verify`): the mean of the prompt's requirements (object
count, colors, graded shape credit, relation) in [0, 1]. `per_category_accuracy` is GenEval's metric: per
category, the fraction of images whose prompt is fully satisfied, plus "overall" (the mean of the
category accuracies, as GenEval reports). A prompt outside the grammar raises ValueError naming the
word or construct that failed to parse.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Mapping, Sequence

import torch

from vgrpo.world.detect import detect
from vgrpo.world.prompts import CATEGORIES, parse
from vgrpo.world.verify import DENSE_RAMPS, EXACT_RAMPS, ShapeRamps, Verdict, verify


def verdicts(images: torch.Tensor, prompts: Sequence[str], ramps: ShapeRamps = EXACT_RAMPS) -> list[Verdict]:
    """Per-image requirement breakdowns for images [B, 3, H, W] float in [0, 1] and B prompts
    (shape credit graded by `ramps`: the verifier's own by default)."""
    if isinstance(prompts, str):
        raise ValueError("prompts must be a sequence of str, got a single str")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    if images.shape[0] != len(prompts):
        raise ValueError(f"got {images.shape[0]} images for {len(prompts)} prompts")
    specs = [parse(p) for p in prompts]  # parse first: a bad prompt fails before detection work
    size = images.shape[-1]
    return [verify(s, objs, size, ramps) for s, objs in zip(specs, detect(images))]


def score(images: torch.Tensor, prompts: Sequence[str], ramps: ShapeRamps = EXACT_RAMPS) -> torch.Tensor:
    """Verifier score per image: [B] float32 in [0, 1] (1 = every requirement of the prompt met)."""
    return torch.tensor([v.score for v in verdicts(images, prompts, ramps)], dtype=torch.float32)


def category_means(values: Sequence[float], categories: Sequence[str]) -> dict[str, float]:
    """Mean of `values` per category (in CATEGORIES order, only those present), plus "overall", the
    mean over those categories."""
    vals: dict[str, list[float]] = defaultdict(list)
    for cat, x in zip(categories, values):
        vals[cat].append(x)
    out = {c: sum(vals[c]) / len(vals[c]) for c in CATEGORIES if c in vals}
    out["overall"] = sum(out.values()) / len(out)
    return out


def per_category_accuracy(images: torch.Tensor, prompts: Sequence[str]) -> dict[str, float]:
    """GenEval-style accuracy: category -> fraction of its images fully satisfied; plus "overall".

    Only categories present in `prompts` appear; "overall" is the mean over those categories.
    """
    return category_report(images, prompts)["accuracy"]


def per_category_score(images: torch.Tensor, prompts: Sequence[str]) -> dict[str, float]:
    """Mean verifier score (partial credit) per category, plus "overall" (mean over categories)."""
    return category_report(images, prompts)["score"]


REQUIREMENTS = ("count", "color", "shape", "relation")
"""The verifier's requirements, in report order."""


def requirement_of(key: str) -> str:
    """The requirement a verdict's key belongs to ("relation:left of" -> "relation")."""
    return key.split(":")[0]


def requirement_means(requirements: Sequence[Mapping[str, float]],
                      categories: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per category, each requirement's mean credit over its images (one {verdict key: credit} per
    image, "relation:left of" counting as "relation"), a requirement only where the category's
    images have it; plus "overall" (per requirement, the mean over the categories that have it)."""
    vals: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for cat, req in zip(categories, requirements):
        for key, credit in req.items():
            vals[cat][requirement_of(key)].append(credit)
    out = {c: {r: sum(vals[c][r]) / len(vals[c][r]) for r in REQUIREMENTS if r in vals[c]}
           for c in CATEGORIES if c in vals}
    have = {r: [m[r] for m in out.values() if r in m] for r in REQUIREMENTS}
    out["overall"] = {r: sum(ms) / len(ms) for r, ms in have.items() if ms}
    return out


def per_category_requirements(images: torch.Tensor, prompts: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean credit of each requirement per category: {category: {requirement: mean}}, a requirement
    only where the category's prompts have it (color only for prompts naming a color), plus "overall"
    (`requirement_means`). Shows which requirement holds a model back: every requirement of a
    ground-truth render is 1."""
    return category_report(images, prompts)["requirements"]


def category_report(images: torch.Tensor, prompts: Sequence[str]) -> dict[str, dict]:
    """The three per-category views of one detection pass over images [B, 3, H, W] and B prompts:
    {"score": per_category_score, "accuracy": per_category_accuracy, "requirements":
    per_category_requirements} (each with its "overall")."""
    found = verdicts(images, prompts)
    categories = [parse(p).category for p in prompts]
    return {
        "score": category_means([v.score for v in found], categories),
        "accuracy": category_means([1.0 if v.satisfied else 0.0 for v in found], categories),
        "requirements": requirement_means([v.requirements for v in found], categories),
    }


class ShapesReward:
    """`Reward` protocol wrapper of `score` (name "shapes")."""

    name = "shapes"
    ramps = EXACT_RAMPS

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        return score(images, prompts, self.ramps)


class DenseShapesReward(ShapesReward):
    """The verifier with wider shape-credit ramps (`DENSE_RAMPS`), a training reward (name
    "shapes_dense"): shape credit keeps rising over the distances a model's blobs have, where the
    verifier's own ramps give 0. Held-out evaluation stays on the verifier."""

    name = "shapes_dense"
    ramps = DENSE_RAMPS
