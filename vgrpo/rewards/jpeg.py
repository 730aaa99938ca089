"""JPEG compressibility / incompressibility rewards (as in DDPO, Black et al. 2023).

Each image is encoded as JPEG (quality 95, as DDPO) and scored by its size in kilobytes:
compressibility = -size_kb, incompressibility = +size_kb. DDPO's images are 512x512; at the shapes
world's 32x32 sizes are about 0.5-2 kB, so use these rewards with a weight or rely on the trainer's
per-group advantage normalisation (which makes the scale irrelevant).
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import torch
from PIL import Image

JPEG_QUALITY = 95


def jpeg_sizes_kb(images: torch.Tensor, quality: int = JPEG_QUALITY) -> torch.Tensor:
    """JPEG size of each image of [B, 3, H, W] (float in [0, 1]) in kB (1000 bytes): [B] float32."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
    arr = (images.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8)
    arr = arr.permute(0, 2, 3, 1).numpy()
    sizes = []
    for img in arr:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(img)).save(buf, format="JPEG", quality=quality)
        sizes.append(buf.tell() / 1000.0)
    return torch.tensor(sizes, dtype=torch.float32)


class JpegCompressibility:
    """Reward = -JPEG size in kB (smaller files score higher)."""

    name = "jpeg_compressibility"

    def __init__(self, quality: int = JPEG_QUALITY) -> None:
        self.quality = quality

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        return -jpeg_sizes_kb(images, self.quality)


class JpegIncompressibility:
    """Reward = +JPEG size in kB (larger files score higher)."""

    name = "jpeg_incompressibility"

    def __init__(self, quality: int = JPEG_QUALITY) -> None:
        self.quality = quality

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        return jpeg_sizes_kb(images, self.quality)
