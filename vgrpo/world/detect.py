"""Exact object detection for shapes-world images: palette colors, connected components, shape class.

Each pixel is assigned to the nearest of the background and the palette colors (RGB distance);
pixels farther than `COLOR_TOLERANCE` from all of them count as background. Each 4-connected
component of one color with at least `MIN_AREA` pixels (at 32 px, scaled by area) is an object.
Its shape class comes from how much of its bounding box it fills: a square fills all of it, a
disc about pi/4 (0.80-0.85 rasterised), an upward triangle about half (0.57-0.63).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vgrpo.world.render import BACKGROUND, PALETTE

COLOR_NAMES: tuple[str, ...] = tuple(PALETTE)
COLOR_TOLERANCE = 0.35
MIN_AREA = 10
SQUARE_MIN_FILL = 0.93
CIRCLE_MIN_FILL = 0.71


@dataclass(frozen=True)
class DetectedObject:
    """One detected object: class, color, bounding-box centre (x, y) in pixels, area, bbox fill ratio."""

    shape: str
    color: str
    center: tuple[float, float]
    area: int
    fill: float


def classify_shape(fill: float) -> str:
    """Shape class from the fraction of the bounding box an object fills."""
    if fill >= SQUARE_MIN_FILL:
        return "square"
    if fill >= CIRCLE_MIN_FILL:
        return "circle"
    return "triangle"


def color_labels(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> [B, H, W] long: 0 background, k >= 1 palette color COLOR_NAMES[k - 1]."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
    ref = torch.tensor([BACKGROUND] + [PALETTE[c] for c in COLOR_NAMES], dtype=torch.float32)
    x = images.detach().float().cpu().clamp(0, 1)
    dist = (x[:, None] - ref[None, :, :, None, None]).square().sum(2).sqrt()  # [B, K+1, H, W]
    best, label = dist.min(1)
    return torch.where(best <= COLOR_TOLERANCE, label, torch.zeros_like(label))


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """4-connected component labels of [N, H, W] bool masks: [N, H, W] long, 0 off-mask, else > 0.

    Each component gets the largest flat index (+1) among its pixels, by iterated neighbour max.
    """
    n, h, w = mask.shape
    idx = torch.arange(1, h * w + 1, dtype=torch.int32).view(1, h, w).expand(n, h, w)
    lab = torch.where(mask, idx, torch.zeros_like(idx))
    for _ in range(h * w):
        p = F.pad(lab, (1, 1, 1, 1))
        nb = torch.maximum(torch.maximum(p[:, :-2, 1:-1], p[:, 2:, 1:-1]), torch.maximum(p[:, 1:-1, :-2], p[:, 1:-1, 2:]))
        new = torch.where(mask, torch.maximum(lab, nb), lab)
        if torch.equal(new, lab):
            break
        lab = new
    return lab.long()


def detect(images: torch.Tensor) -> list[list[DetectedObject]]:
    """Objects in each image of [B, 3, H, W] (float in [0, 1]); a list of B lists."""
    labels = color_labels(images)
    b, h, w = labels.shape
    k = len(COLOR_NAMES)
    masks = labels[:, None] == torch.arange(1, k + 1).view(1, k, 1, 1)  # [B, K, H, W]
    comp = connected_components(masks.view(b * k, h, w))  # [B*K, H, W]
    min_area = max(3, round(MIN_AREA * h * w / 1024))
    out: list[list[DetectedObject]] = [[] for _ in range(b)]
    nz = comp.nonzero(as_tuple=False)  # [M, 3] (image*color, y, x)
    if nz.numel() == 0:
        return out
    key = nz[:, 0] * (h * w + 1) + comp[nz[:, 0], nz[:, 1], nz[:, 2]]
    uniq, inv = torch.unique(key, return_inverse=True)
    u = uniq.numel()
    area = torch.bincount(inv, minlength=u)
    big = torch.full((u,), 10**9, dtype=torch.long)
    x0 = big.clone().scatter_reduce_(0, inv, nz[:, 2], "amin")
    y0 = big.clone().scatter_reduce_(0, inv, nz[:, 1], "amin")
    x1 = torch.zeros(u, dtype=torch.long).scatter_reduce_(0, inv, nz[:, 2], "amax")
    y1 = torch.zeros(u, dtype=torch.long).scatter_reduce_(0, inv, nz[:, 1], "amax")
    cx = (x0 + x1 + 1).float() / 2.0  # bounding-box centre, as the renderer places objects
    cy = (y0 + y1 + 1).float() / 2.0
    fill = area.float() / ((x1 - x0 + 1) * (y1 - y0 + 1)).float()
    owner = uniq // (h * w + 1)
    for j in range(u):
        a = int(area[j])
        if a < min_area:
            continue
        bk = int(owner[j])
        f = float(fill[j])
        out[bk // k].append(
            DetectedObject(classify_shape(f), COLOR_NAMES[bk % k], (float(cx[j]), float(cy[j])), a, f)
        )
    return out
