"""Ground-truth renderer: draws a random layout that satisfies any prompt of the grammar.

Images are RGB float32 in [0, 1] on a black background with flat-colored, non-touching objects
(so every object is one connected component of one palette color). Box sides at 32x32 (scaled
with the image size) depend on how many objects the image holds (`OBJECT_SIDES`): 12-16 px for one,
12-15 px for two, 11-13 px for three and 9-11 px for four. Layouts for relations are drawn by rejection until
`vgrpo.world.detect.relation_holds` is satisfied, so the verifier accepts every render.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from vgrpo.world.prompts import COLORS, SHAPES, PromptSpec, parse
from vgrpo.world.geometry import relation_holds

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.12),
    "green": (0.10, 0.75, 0.20),
    "blue": (0.15, 0.35, 1.00),
    "yellow": (0.95, 0.85, 0.10),
}
BACKGROUND = (0.0, 0.0, 0.0)
GAP = 2  # minimum empty pixels between object bounding boxes (at 32 px)
# Box side range (lo, hi), at 32 px, by the number of objects in the image: as large as the crowding allows.
OBJECT_SIDES: dict[int, tuple[int, int]] = {1: (12, 16), 2: (12, 15), 3: (11, 13), 4: (9, 11)}


def shape_mask(shape: str, size: int) -> np.ndarray:
    """[size, size] bool mask of `shape` filling a size x size box (triangle points up)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}, expected one of {SHAPES}")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "circle":
        r = size / 2.0
        return (xx - r) ** 2 + (yy - r) ** 2 <= r * r
    # Isosceles triangle, apex at top centre, base on the bottom row.
    half_width = (yy / size) * (size / 2.0)
    return np.abs(xx - size / 2.0) <= half_width + 0.25


def _boxes_clear(box: tuple[int, int, int], boxes: list[tuple[int, int, int]], gap: int) -> bool:
    x, y, s = box
    for bx, by, bs in boxes:
        if x < bx + bs + gap and bx < x + s + gap and y < by + bs + gap and by < y + s + gap:
            return False
    return True


def sample_layout(
    spec: PromptSpec, rng: np.random.Generator, size: int = 32, max_tries: int = 200
) -> list[tuple[str, str, int, int, int]]:
    """Random objects (shape, color, x, y, box size) satisfying `spec`; (x, y) is the top-left corner."""
    scale = size / 32.0
    gap = max(1, round(GAP * scale))
    wanted: list[tuple[str, str]] = []
    for obj in spec.objects:
        for _ in range(obj.count):
            wanted.append((obj.shape, obj.color or COLORS[rng.integers(len(COLORS))]))
    if len(wanted) not in OBJECT_SIDES:
        raise ValueError(f"{spec} asks for {len(wanted)} objects; the renderer draws 1-{max(OBJECT_SIDES)}")
    lo_32, hi_32 = OBJECT_SIDES[len(wanted)]
    lo, hi = max(4, round(lo_32 * scale)), max(5, round(hi_32 * scale))
    for _ in range(max_tries):
        boxes: list[tuple[int, int, int]] = []
        ok = True
        for _shape in wanted:
            s = int(rng.integers(lo, hi + 1))
            for _attempt in range(50):
                box = (int(rng.integers(1, size - s)), int(rng.integers(1, size - s)), s)
                if _boxes_clear(box, boxes, gap):
                    boxes.append(box)
                    break
            else:
                ok = False
                break
        if not ok:
            continue
        if spec.relation is not None:
            a, b = boxes[0], boxes[1]
            ca = (a[0] + a[2] / 2.0, a[1] + a[2] / 2.0)
            cb = (b[0] + b[2] / 2.0, b[1] + b[2] / 2.0)
            if not relation_holds(spec.relation, ca, cb, size):
                continue
        return [(sh, co, x, y, s) for (sh, co), (x, y, s) in zip(wanted, boxes)]
    raise RuntimeError(f"could not place {len(wanted)} objects for {spec} in {max_tries} tries")


def draw(layout: Sequence[tuple[str, str, int, int, int]], size: int = 32) -> np.ndarray:
    """Paint a layout: returns [3, size, size] float32 in [0, 1]."""
    img = np.empty((3, size, size), dtype=np.float32)
    img[:] = np.asarray(BACKGROUND, dtype=np.float32)[:, None, None]
    for shape, color, x, y, s in layout:
        if color not in PALETTE:
            raise ValueError(f"unknown color {color!r}, expected one of {tuple(PALETTE)}")
        m = shape_mask(shape, s)
        rgb = np.asarray(PALETTE[color], dtype=np.float32)[:, None]
        region = img[:, y : y + s, x : x + s]
        region[:, m] = rgb
    return img


def render(prompt: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One ground-truth image for `prompt`: [3, size, size] float32 in [0, 1]."""
    if size < 16:
        raise ValueError(f"image size must be >= 16, got {size}")
    return draw(sample_layout(parse(prompt), rng, size), size)


def render_batch(prompts: Sequence[str], seed: int | np.random.Generator = 0, size: int = 32) -> torch.Tensor:
    """Ground truth for a batch of prompts: [B, 3, size, size] float32 in [0, 1]."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return torch.from_numpy(np.stack([render(p, rng, size) for p in prompts]))
