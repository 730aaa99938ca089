"""Exact verifier: scores detected objects against a parsed prompt, with partial credit.

A prompt's requirements (each scored in [0, 1]):
- count, per mentioned shape: 1 - |found - wanted| / wanted, floored at 0 (wanted = objects of that
  shape the prompt asks for; "a circle" wants 1, "three circles" 3);
- color, per (shape, color) the prompt names: min(found with that color, wanted) / wanted;
- relation (position prompts): 1 if some object matching the first phrase stands in the relation
  to some object matching the second (`vgrpo.world.geometry.relation_holds`), else 0.
The score is the mean of the requirements divided by (1 + extras), where extras counts detected
objects whose shape the prompt does not mention (so an empty or cluttered image scores low). A
prompt is satisfied (GenEval "accuracy") when every requirement is 1 and there are no extras.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from vgrpo.world.detect import DetectedObject
from vgrpo.world.geometry import relation_holds
from vgrpo.world.prompts import ObjectSpec, PromptSpec


@dataclass(frozen=True)
class Verdict:
    """Per-requirement scores (name -> [0, 1]) and the number of unrequested objects."""

    requirements: dict[str, float]
    extras: int

    @property
    def score(self) -> float:
        return sum(self.requirements.values()) / len(self.requirements) / (1.0 + self.extras)

    @property
    def satisfied(self) -> bool:
        return self.extras == 0 and all(v >= 1.0 for v in self.requirements.values())


def _matches(obj: DetectedObject, want: ObjectSpec) -> bool:
    return obj.shape == want.shape and (want.color is None or obj.color == want.color)


def verify(spec: PromptSpec, objects: list[DetectedObject], size: int = 32) -> Verdict:
    """Score the objects detected in one image (of side `size` px) against a parsed prompt."""
    req: dict[str, float] = {}
    wanted_shapes: Counter[str] = Counter()
    wanted_colors: Counter[tuple[str, str]] = Counter()
    for o in spec.objects:
        wanted_shapes[o.shape] += o.count
        if o.color is not None:
            wanted_colors[(o.shape, o.color)] += o.count
    found_shapes = Counter(o.shape for o in objects)
    found_colors = Counter((o.shape, o.color) for o in objects)
    for shape, n in wanted_shapes.items():
        req[f"count:{shape}"] = max(0.0, 1.0 - abs(found_shapes[shape] - n) / n)
    for (shape, color), n in wanted_colors.items():
        req[f"color:{color} {shape}"] = min(found_colors[(shape, color)], n) / n
    extras = sum(1 for o in objects if o.shape not in wanted_shapes)
    if spec.relation is not None:
        first, second = spec.objects
        ok = any(
            relation_holds(spec.relation, a.center, b.center, size)
            for a in objects
            if _matches(a, first)
            for b in objects
            if b is not a and _matches(b, second)
        )
        req[f"relation:{spec.relation}"] = 1.0 if ok else 0.0
    return Verdict(req, extras)
