"""Spatial relations shared by the renderer (which satisfies them) and the verifier (which checks them)."""

from __future__ import annotations

from vgrpo.world.prompts import RELATIONS

MIN_OFFSET = 4.0  # minimum centre offset along the relation axis, in pixels at 32 px


def relation_holds(relation: str, a: tuple[float, float], b: tuple[float, float], size: int = 32) -> bool:
    """Whether centre a = (x, y) is `relation` of centre b (image y grows downwards).

    "a left of b": b.x - a.x >= MIN_OFFSET (scaled) and the horizontal offset exceeds the vertical
    one; the other relations are the same test along their own axis and direction.
    """
    dx, dy = b[0] - a[0], b[1] - a[1]
    m = MIN_OFFSET * size / 32.0
    if relation == "left of":
        return dx >= m and abs(dx) > abs(dy)
    if relation == "right of":
        return -dx >= m and abs(dx) > abs(dy)
    if relation == "above":
        return dy >= m and abs(dy) > abs(dx)
    if relation == "below":
        return -dy >= m and abs(dy) > abs(dx)
    raise ValueError(f"unknown relation {relation!r}, expected one of {RELATIONS}")
