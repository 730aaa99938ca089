"""CLIP-style image preprocessing on the images' own device with torch ops (no PIL round trip).

Every CLIP-family reward (PickScore, CLIPScore, aesthetic, HPSv2.1, ImageReward) resizes the shorter
edge to `size` with antialiased bicubic interpolation, centre-crops to `crop` and normalises with
`mean` / `std`. The originals do this on uint8 PIL images; here the whole batch stays a float
tensor on the training device:

- `quantize=True` first rounds to the 256 levels of a saved uint8 image, as the originals see it;
- the resize is `F.interpolate(mode="bicubic", antialias=True)`, whose filter (a = -0.5, support
  scaled by the downsampling factor) is PIL's `Image.resize(BICUBIC)` and torchvision's
  `Resize(antialias=True)`; output size as both: shorter edge = size, longer = int(size * long / short);
- `clamp=True` clips the resized values to [0, 1], as PIL's uint8 result is (transformers'
  CLIPImageProcessor and ImageReward's torchvision transform resize PIL images); HPSv2.1 resizes a
  float tensor (ToTensor comes first in its transform), which is not clipped: `clamp=False`;
- the crop offset is `(h - crop) // 2` in transformers' `center_crop` ("floor") and
  `int(round((h - crop) / 2))` in torchvision's `CenterCrop` ("round"; they differ when h - crop is
  odd and its half rounds up).

Agreement with the PIL path (tests/test_rewards_image_transform.py): on uint8-valued inputs, mean
absolute difference under 0.4/255 and maximum under 1.5/255 before normalisation (measured 0.3/255
and 1.1/255: PIL rounds to uint8 between its horizontal and vertical passes and at the end).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PIL_RESAMPLE_MODES = {2: "bilinear", 3: "bicubic"}  # PIL.Image.Resampling values in processor configs


@dataclass(frozen=True)
class ImageTransform:
    """[B, 3, H, W] float in [0, 1] (any device) -> [B, 3, crop_h, crop_w] normalised pixels, same device.

    size: target of the shorter edge; crop: (height, width) of the centre crop; mean/std: per channel.
    """

    size: int
    crop: tuple[int, int]
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    interpolation: str = "bicubic"
    crop_offset: str = "floor"
    clamp: bool = True
    quantize: bool = True

    def __post_init__(self) -> None:
        if self.interpolation not in ("bicubic", "bilinear"):
            raise ValueError(f"interpolation must be bicubic or bilinear, got {self.interpolation!r}")
        if self.crop_offset not in ("floor", "round"):
            raise ValueError(f"crop_offset must be 'floor' (transformers) or 'round' (torchvision), got {self.crop_offset!r}")
        if self.size <= 0 or min(self.crop) <= 0:
            raise ValueError(f"size and crop must be positive, got size={self.size}, crop={self.crop}")

    def resized_shape(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) after the shorter-edge resize (torchvision's and transformers' rounding)."""
        short, long = min(height, width), max(height, width)
        new_long = int(self.size * long / short)
        return (self.size, new_long) if height <= width else (new_long, self.size)

    def __call__(self, images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got shape {list(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
        x = images.detach().float().clamp(0, 1)  # a new tensor: the in-place ops below keep `images` intact
        if self.quantize:
            x.mul_(255).round_().div_(255)
        h, w = self.resized_shape(x.shape[2], x.shape[3])
        if (h, w) != tuple(x.shape[2:]):
            x = F.interpolate(x, size=(h, w), mode=self.interpolation, align_corners=False, antialias=True)
            if self.clamp:
                x.clamp_(0, 1)
        ch, cw = self.crop
        if ch > h or cw > w:
            raise ValueError(f"crop {self.crop} is larger than the resized image {(h, w)} (size={self.size})")
        top, left = self._offset(h - ch), self._offset(w - cw)
        x = x[:, :, top : top + ch, left : left + cw]
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return x.sub(mean).div_(std).to(dtype)

    def _offset(self, excess: int) -> int:
        return excess // 2 if self.crop_offset == "floor" else int(round(excess / 2.0))


def clip_processor_transform(directory: str | Path) -> ImageTransform:
    """The transform of a transformers CLIPImageProcessor saved in `directory`.

    Reads preprocessor_config.json (hub releases) or the "image_processor" entry of
    processor_config.json (transformers 5 saves): size.shortest_edge, crop_size, image_mean/std and
    resample (3 = bicubic); transformers' centre crop ("floor" offsets), PIL semantics (clamp).
    """
    directory = Path(directory)
    path = directory / "preprocessor_config.json"
    if path.is_file():
        cfg = json.loads(path.read_text())
    elif (directory / "processor_config.json").is_file():
        path = directory / "processor_config.json"
        cfg = json.loads(path.read_text()).get("image_processor", {})
    else:
        raise FileNotFoundError(
            f"{directory}: no preprocessor_config.json or processor_config.json (the CLIP image processor config)"
        )
    size = cfg.get("size", 224)
    size = size.get("shortest_edge", size.get("height")) if isinstance(size, dict) else size
    crop = cfg.get("crop_size", size)
    crop = (crop["height"], crop["width"]) if isinstance(crop, dict) else (crop, crop)
    if not cfg.get("do_center_crop", True) or not cfg.get("do_resize", True) or not cfg.get("do_normalize", True):
        raise ValueError(f"{path}: only resize + centre crop + normalise processors are supported")
    resample = cfg.get("resample", 3)
    if resample not in PIL_RESAMPLE_MODES:
        raise ValueError(f"{path}: resample={resample} unsupported; known {PIL_RESAMPLE_MODES}")
    return ImageTransform(
        size=int(size),
        crop=(int(crop[0]), int(crop[1])),
        mean=tuple(cfg.get("image_mean", OPENAI_CLIP_MEAN)),
        std=tuple(cfg.get("image_std", OPENAI_CLIP_STD)),
        interpolation=PIL_RESAMPLE_MODES[resample],
        crop_offset="floor",
    )
