"""Spatial relations shared by the renderer (which satisfies them) and the verifier (which checks them)."""

from __future__ import annotations

from vgrpo.world.prompts import RELATIONS

MIN_OFFSET = 4.0  # minimum centre offset along the relation axis, in pixels at 32 px
RELATION_RAMP = 1.0  # the verifier's credit falls to 0 this many pixels (at 32 px) short of a threshold


def relation_holds(relation: str, a: tuple[float, float], b: tuple[float, float], size: int = 32) -> bool:
    """Whether centre a = (x, y) is `relation` of centre b (image y grows downwards).

    "a left of b": b.x - a.x >= MIN_OFFSET (scaled) and the horizontal offset exceeds the vertical
    one; the other relations are the same test along their own axis and direction.
    """
    d, other = _offsets(relation, a, b)
    return d >= MIN_OFFSET * size / 32.0 and d > other


def _offsets(relation: str, a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """(offset along the relation's axis in its direction, absolute offset along the other axis)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    if relation == "left of":
        return dx, abs(dy)
    if relation == "right of":
        return -dx, abs(dy)
    if relation == "above":
        return dy, abs(dx)
    if relation == "below":
        return -dy, abs(dx)
    raise ValueError(f"unknown relation {relation!r}, expected one of {RELATIONS}")


def relation_credit(relation: str, a: tuple[float, float], b: tuple[float, float], size: int = 32) -> float:
    """Graded `relation_holds`: 1 when the along-axis offset d >= MIN_OFFSET and d >= the other-axis
    offset, falling linearly to 0 when d is RELATION_RAMP pixels (scaled) short of either."""
    d, other = _offsets(relation, a, b)
    scale = size / 32.0
    ramp = RELATION_RAMP * scale
    short = max(MIN_OFFSET * scale - d, other - d, 0.0)
    return max(0.0, 1.0 - short / ramp)
