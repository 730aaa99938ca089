"""One image-grid writer for every sample grid of the project: tiles in rows, a caption under each
tile (a prompt, a score), optional labels left of the rows.

Tiles are resized so that their longer side lies in [min_tile, max_tile] pixels: small images
(the shapes world's 32 x 32) are upscaled by an integer factor with nearest neighbours, large ones
(FLUX's 1024 x 1024) downscaled with antialiasing, so a grid of 36 FLUX images stays a few MB.
"""

from __future__ import annotations

import math
import textwrap
from typing import Sequence

import numpy as np
import torch

PAD = 4
LINE_H = 11  # pixels per caption line of PIL's default bitmap font
CHAR_W = 6


def _tiles(images: torch.Tensor, min_tile: int, max_tile: int):
    """images [N, 3, H, W] in [0, 1] -> list of N PIL images, resized as the module says."""
    from PIL import Image

    n, _, h, w = images.shape
    side = max(h, w)
    if side < min_tile:
        size = (w * math.ceil(min_tile / side), h * math.ceil(min_tile / side))
        resample = Image.NEAREST
    elif side > max_tile:
        size = (max(1, round(w * max_tile / side)), max(1, round(h * max_tile / side)))
        resample = Image.LANCZOS
    else:
        size, resample = (w, h), None
    arrays = (images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    tiles = [Image.fromarray(a) for a in arrays]
    return [t.resize(size, resample) if resample is not None else t for t in tiles]


def image_grid(
    images: torch.Tensor,
    captions: Sequence[str] | None = None,
    *,
    columns: int = 8,
    row_labels: Sequence[str] | None = None,
    caption_lines: int = 3,
    min_tile: int = 128,
    max_tile: int = 256,
    label_width: int = 230,
):
    """A PIL image of `images` [N, 3, H, W] in [0, 1], `columns` per row, row r labelled
    `row_labels[r]`, each tile captioned with `captions[i]` wrapped to at most `caption_lines` lines."""
    from PIL import Image, ImageDraw

    n = images.shape[0]
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    if captions is not None and len(captions) != n:
        raise ValueError(f"got {len(captions)} captions for {n} images")
    tiles = _tiles(images, min_tile, max_tile)
    tw, th = tiles[0].size
    cols = max(1, min(columns, n))
    rows = math.ceil(n / cols)
    wrapped = [_wrap(c, tw, caption_lines) for c in captions] if captions is not None else [[]] * n
    cap_h = max(len(lines) for lines in wrapped) * LINE_H
    left = label_width if row_labels is not None else 0
    cell_h = th + cap_h + PAD
    canvas = Image.new("RGB", (left + cols * (tw + PAD) + PAD, rows * cell_h + PAD), "white")
    draw = ImageDraw.Draw(canvas)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        x, y = left + PAD + c * (tw + PAD), PAD + r * cell_h
        canvas.paste(tile, (x, y))
        for k, line in enumerate(wrapped[i]):
            draw.text((x + 1, y + th + k * LINE_H), line, fill="black")
    for r, label in enumerate(row_labels or []):
        draw.text((4, PAD + r * cell_h + th // 2 - 6), label, fill="black")
    return canvas


def _wrap(text: str, width_px: int, max_lines: int) -> list[str]:
    """`text` wrapped to the tile width, at most `max_lines` lines (the last one cut with "...")."""
    lines = textwrap.wrap(text, width=max(4, width_px // CHAR_W)) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(1, len(lines[-1]) - 3)] + "..."
    return lines
