"""Conversion of image batches to the uint8 PIL images that public reward processors expect."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_pil_images(images: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] float in [0, 1] -> B RGB PIL images (rounded to uint8, as pipelines save them)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got shape {list(images.shape)}")
    arr = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    arr = arr.permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a)) for a in arr]
