"""Exact verifier: scores detected objects against a parsed prompt, with graded partial credit.

The prompt asks for W objects (its phrases expanded by their counts, "three squares" = 3 squares).
Requirements, each in [0, 1]:
- count: 1 - |detected - W| / W, floored at 0, where detected is the sum of the detected objects'
  weights (1 for any object of FULL_AREA pixels or more, whatever its shape; see `vgrpo.world.detect`);
- color (prompts naming a color): the largest number of color-named wanted objects that can be given
  distinct detected objects of their color, divided by their number (shape plays no part);
- shape: the wanted objects are matched one-to-one to detected objects, first maximising the color
  matches, then the total shape credit; the requirement is the mean shape credit of the wanted
  objects (0 for one left without a detected object). Shape credit (`shape_credit`) is graded from
  the shape-feature distances of `vgrpo.world.detect`: 1 when the object is within
  SHAPE_FULL_DISTANCE of the wanted shape's prototype and nearer to it than to any other shape's
  by >= SHAPE_FULL_MARGIN, falling linearly to 0 at distance SHAPE_ZERO_DISTANCE or at a margin of
  SHAPE_ZERO_MARGIN (a clean render of another shape is >= 0.33 away and gets 0);
- relation (position prompts): the best pair (a, b) of distinct detected objects of
  min(phrase credit of a for the first phrase, of b for the second) x relation credit, where a
  phrase's credit is color agreement (0 / 1) for a colored phrase and shape credit for a phrase
  without color, and the relation credit grades `vgrpo.world.geometry.relation_credit`.
A detected object contributes its weight wherever it counts (color match, shape credit, phrase
credit), so a speckle near the detection threshold contributes little. The score is the mean of
the requirements. A prompt is satisfied (GenEval "accuracy") when every
requirement is 1. Ground-truth renders satisfy every prompt they were drawn for.
"""

from __future__ import annotations

from dataclasses import dataclass

from vgrpo.world.detect import DetectedObject
from vgrpo.world.geometry import relation_credit
from vgrpo.world.prompts import SHAPES, ObjectSpec, PromptSpec

SHAPE_FULL_DISTANCE = 0.15
SHAPE_ZERO_DISTANCE = 0.30
SHAPE_FULL_MARGIN = 0.10
SHAPE_ZERO_MARGIN = -0.05


@dataclass(frozen=True)
class ShapeRamps:
    """Where shape credit is full and where it reaches 0: on the distance to the wanted shape's
    prototype (full at <= full_distance, 0 at >= zero_distance) and on the margin to the nearest other
    shape (full at >= full_margin, 0 at <= zero_margin); the credit is the minimum of the two ramps."""

    full_distance: float = SHAPE_FULL_DISTANCE
    zero_distance: float = SHAPE_ZERO_DISTANCE
    full_margin: float = SHAPE_FULL_MARGIN
    zero_margin: float = SHAPE_ZERO_MARGIN


EXACT_RAMPS = ShapeRamps()
"""The verifier's ramps: a clean render of another shape (>= 0.33 away) gets 0."""
DENSE_RAMPS = ShapeRamps(zero_distance=0.60, zero_margin=-0.25)
"""Wider ramps for a training reward (`shapes_dense`): credit keeps rising over the distances that a
model's blobs have (0.3-0.6, where the exact ramps give 0), so shape has a gradient to climb; a clean
render of another shape (margin <= -0.27) still gets 0."""


@dataclass(frozen=True)
class Verdict:
    """Per-requirement scores (name -> [0, 1])."""

    requirements: dict[str, float]

    @property
    def score(self) -> float:
        return sum(self.requirements.values()) / len(self.requirements)

    @property
    def satisfied(self) -> bool:
        return all(v >= 1.0 for v in self.requirements.values())


def _ramp(x: float, zero: float, full: float) -> float:
    return min(1.0, max(0.0, (x - zero) / (full - zero)))


def shape_credit(obj: DetectedObject, shape: str, ramps: ShapeRamps = EXACT_RAMPS) -> float:
    """Graded credit in [0, 1] that `obj` is a `shape`: its shape-feature distance d to the shape's
    prototype and its margin (the nearest other shape's distance minus d), each mapped linearly
    between its zero and full points; the minimum of the two."""
    d = obj.distance_to(shape)
    margin = min(obj.distance_to(s) for s in SHAPES if s != shape) - d
    return min(_ramp(-d, -ramps.zero_distance, -ramps.full_distance),
               _ramp(margin, ramps.zero_margin, ramps.full_margin))


def _color_ok(obj: DetectedObject, want: ObjectSpec) -> bool:
    return want.color is None or obj.color == want.color


def _best_assignment(wanted: list[ObjectSpec], objects: list[DetectedObject], ramps: ShapeRamps) -> tuple[float, float]:
    """(color matches, total shape credit) of the one-to-one matching of wanted to detected objects
    that maximises color matches first, then shape credit (objects may stay unmatched).

    Dynamic programme over subsets of the wanted objects (at most 4), one detected object at a time.
    """
    best: dict[int, tuple[float, float]] = {0: (0.0, 0.0)}
    for obj in objects:
        gains = [(obj.weight * (w.color is not None and obj.color == w.color),
                  obj.weight * shape_credit(obj, w.shape, ramps)) for w in wanted]
        for mask, (c, s) in list(best.items()):
            for i, (gc, gs) in enumerate(gains):
                if mask >> i & 1:
                    continue
                cand = (c + gc, s + gs)
                if cand > best.get(mask | 1 << i, (-1.0, -1.0)):
                    best[mask | 1 << i] = cand
    return max(best.values())


def _phrase_credit(obj: DetectedObject, want: ObjectSpec, ramps: ShapeRamps) -> float:
    if want.color is not None:
        return obj.weight if obj.color == want.color else 0.0
    return obj.weight * shape_credit(obj, want.shape, ramps)


def verify(spec: PromptSpec, objects: list[DetectedObject], size: int = 32, ramps: ShapeRamps = EXACT_RAMPS) -> Verdict:
    """Score the objects detected in one image (of side `size` px) against a parsed prompt (shape
    credit graded by `ramps`: the verifier's own by default)."""
    wanted = [o for o in spec.objects for _ in range(o.count)]
    n = len(wanted)
    found = sum(o.weight for o in objects)
    req: dict[str, float] = {"count": max(0.0, 1.0 - abs(found - n) / n)}
    colors, shapes = _best_assignment(wanted, objects, ramps)
    named = sum(1 for w in wanted if w.color is not None)
    if named:
        req["color"] = colors / named
    req["shape"] = shapes / n
    if spec.relation is not None:
        first, second = spec.objects
        req[f"relation:{spec.relation}"] = max(
            (
                min(_phrase_credit(a, first, ramps), _phrase_credit(b, second, ramps))
                * relation_credit(spec.relation, a.center, b.center, size)
                for a in objects
                for b in objects
                if b is not a
            ),
            default=0.0,
        )
    return Verdict(req)
