"""The shapes verifier as it was before graded shape credit, kept only as the baseline of
`vgrpo.experiments.reward_stability`.

Its rules: each detected object gets a hard shape class from its bounding-box fill (square >= 0.93,
circle >= 0.71, else triangle); count per mentioned shape 1 - |found - wanted| / wanted; color per
(shape, color) min(found, wanted) / wanted; relation 1 if an object of the first phrase's class
(and color) is in the relation to one of the second's; score = mean / (1 + objects of unmentioned
classes).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch

from vgrpo.world.detect import DetectedObject, detect
from vgrpo.world.geometry import relation_holds
from vgrpo.world.prompts import ObjectSpec, PromptSpec, parse

SQUARE_MIN_FILL = 0.93
CIRCLE_MIN_FILL = 0.71


def fill_class(obj: DetectedObject) -> str:
    """The old hard shape class of an object, from its bounding-box fill."""
    if obj.fill >= SQUARE_MIN_FILL:
        return "square"
    return "circle" if obj.fill >= CIRCLE_MIN_FILL else "triangle"


def legacy_verdict(spec: PromptSpec, objects: list[DetectedObject], size: int = 32) -> float:
    """The old verifier's score of one image's detected objects."""
    shapes = [fill_class(o) for o in objects]
    wanted_shapes: Counter[str] = Counter()
    wanted_colors: Counter[tuple[str, str]] = Counter()
    for o in spec.objects:
        wanted_shapes[o.shape] += o.count
        if o.color is not None:
            wanted_colors[(o.shape, o.color)] += o.count
    found_shapes = Counter(shapes)
    found_colors = Counter(zip(shapes, (o.color for o in objects)))
    req = [max(0.0, 1.0 - abs(found_shapes[s] - n) / n) for s, n in wanted_shapes.items()]
    req += [min(found_colors[k], n) / n for k, n in wanted_colors.items()]

    def matches(i: int, want: ObjectSpec) -> bool:
        return shapes[i] == want.shape and (want.color is None or objects[i].color == want.color)

    if spec.relation is not None:
        first, second = spec.objects
        req.append(float(any(
            relation_holds(spec.relation, objects[i].center, objects[j].center, size)
            for i in range(len(objects)) if matches(i, first)
            for j in range(len(objects)) if j != i and matches(j, second)
        )))
    extras = sum(1 for s in shapes if s not in wanted_shapes)
    return sum(req) / len(req) / (1.0 + extras)


def legacy_score(images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
    """[B] old verifier scores of images [B, 3, H, W] in [0, 1]."""
    size = images.shape[-1]
    return torch.tensor([legacy_verdict(parse(p), objs, size) for p, objs in zip(prompts, detect(images))])
