"""Exact object detection for shapes-world images: palette colors, connected components, shape features.

Each pixel is assigned to the nearest of the background and the palette colors (RGB distance);
pixels farther than `COLOR_TOLERANCE` from all of them count as background. Each 4-connected
component of one color with at least `MIN_AREA` pixels (at 32 px, scaled by area) is an object.
Its shape is measured, not classified: each pixel of the component weighs by how close it is to
the color (`nearest_colors`), and three moments of these weights (`shape_features`) are compared
with those of the renderer's circle, square and triangle (`shape_distances`). The moments are
smooth in the pixel values, so an imperceptible change of the image moves them imperceptibly;
`vgrpo.world.verify.shape_credit` grades the distances. `shape` is only the nearest shape, for display.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vgrpo.world.prompts import SHAPES
from vgrpo.world.render import BACKGROUND, PALETTE, shape_mask

COLOR_NAMES: tuple[str, ...] = tuple(PALETTE)
COLOR_TOLERANCE = 0.35
COLOR_FULL = 0.15  # pixels this close to their color are full members of an object; 0 at COLOR_TOLERANCE
MIN_AREA = 10
FULL_AREA = 30  # components between MIN_AREA and FULL_AREA pixels (at 32 px) count as a fraction of an object


@dataclass(frozen=True)
class DetectedObject:
    """One detected object: nearest shape, color, bounding-box centre (x, y) in pixels, area
    (pixels), bounding-box fill ratio, `distance`, the shape-feature distance to each shape's
    prototype in `SHAPES` order (`shape_distances`), and `weight`, how much of an object it is:
    0 at a soft area (sum of pixel memberships) of MIN_AREA pixels rising linearly to 1 at FULL_AREA
    (both scaled with the image area), so a speckle that grows or shrinks past the detection
    threshold changes the verdict gradually. Every rendered object has weight 1."""

    shape: str
    color: str
    center: tuple[float, float]
    area: int
    fill: float
    distance: tuple[float, ...]
    weight: float = 1.0

    def distance_to(self, shape: str) -> float:
        """Shape-feature distance of this object to `shape`'s prototype."""
        return self.distance[SHAPES.index(shape)]


MOMENT_WEIGHTS = (1.0, 0.5, 1.0)  # scale of each shape feature in the distance between shapes


def shape_features(weights: torch.Tensor) -> tuple[float, float, float]:
    """Translation- and scale-invariant moments of a [h, w] non-negative pixel-weight map:
    E[dx^2 dy^2] / (E[dx^2] E[dy^2]) (square 1, disc 2/3), the skewness of y (upward triangle
    about -0.55, symmetric shapes 0) and log(E[dx^2] / E[dy^2]) (triangle about -0.28, else 0),
    with dx, dy the offsets from the weighted centroid. Each is a smooth function of the weights."""
    m = weights.double()
    h, w = m.shape
    yy = torch.arange(h, dtype=torch.float64).view(h, 1) + 0.5
    xx = torch.arange(w, dtype=torch.float64).view(1, w) + 0.5
    a = m.sum()
    dx = xx - (m * xx).sum() / a
    dy = yy - (m * yy).sum() / a
    vx = (m * dx.square()).sum() / a
    vy = (m * dy.square()).sum() / a
    if float(vx) <= 0 or float(vy) <= 0:
        return (0.0, 0.0, 0.0)
    cross = (m * dx.square() * dy.square()).sum() / a / (vx * vy)
    skew = (m * dy.pow(3)).sum() / a / vy.pow(1.5)
    return (float(cross), float(skew), float(torch.log(vx / vy)))


@functools.lru_cache(maxsize=1)
def prototypes() -> dict[str, tuple[float, float, float]]:
    """The shape features of each shape as the renderer draws it at 64 px (near its continuum limit)."""
    return {s: shape_features(torch.from_numpy(shape_mask(s, 64)).float()) for s in SHAPES}


def shape_distances(features: tuple[float, float, float]) -> tuple[float, ...]:
    """Weighted Euclidean distance of shape features to each shape's prototype, in `SHAPES` order."""
    protos = prototypes()
    return tuple(
        sum((wt * (f - p)) ** 2 for wt, f, p in zip(MOMENT_WEIGHTS, features, protos[s])) ** 0.5 for s in SHAPES
    )


def color_labels(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1] -> [B, H, W] long: 0 background, k >= 1 palette color COLOR_NAMES[k - 1]."""
    return nearest_colors(images)[0]


def nearest_colors(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, 3, H, W] in [0, 1] -> (labels [B, H, W] long as `color_labels`, membership [B, H, W]
    float: 1 within COLOR_FULL of the pixel's color, falling linearly to 0 at COLOR_TOLERANCE)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
    ref = torch.tensor([BACKGROUND] + [PALETTE[c] for c in COLOR_NAMES], dtype=torch.float32)
    x = images.detach().float().cpu().clamp(0, 1)
    dist = (x[:, None] - ref[None, :, :, None, None]).square().sum(2).sqrt()  # [B, K+1, H, W]
    best, label = dist.min(1)
    label = torch.where(best <= COLOR_TOLERANCE, label, torch.zeros_like(label))
    member = ((COLOR_TOLERANCE - best) / (COLOR_TOLERANCE - COLOR_FULL)).clamp(0.0, 1.0)
    return label, torch.where(label > 0, member, torch.zeros_like(member))


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
    labels, member = nearest_colors(images)
    b, h, w = labels.shape
    k = len(COLOR_NAMES)
    masks = labels[:, None] == torch.arange(1, k + 1).view(1, k, 1, 1)  # [B, K, H, W]
    comp = connected_components(masks.view(b * k, h, w))  # [B*K, H, W]
    min_area = max(3, round(MIN_AREA * h * w / 1024))
    full_area = max(min_area + 1, round(FULL_AREA * h * w / 1024))
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
        ys, xs = int(y0[j]), int(x0[j])
        ye, xe = int(y1[j]) + 1, int(x1[j]) + 1
        soft = member[bk // k, ys:ye, xs:xe] * (comp[bk, ys:ye, xs:xe] == int(uniq[j]) % (h * w + 1))
        dist = shape_distances(shape_features(soft))
        best = SHAPES[min(range(len(SHAPES)), key=dist.__getitem__)]
        weight = min(1.0, max(0.0, (float(soft.sum()) - min_area) / (full_area - min_area)))
        out[bk // k].append(
            DetectedObject(best, COLOR_NAMES[bk % k], (float(cx[j]), float(cy[j])), a, float(fill[j]), dist, weight)
        )
    return out
