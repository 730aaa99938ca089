"""HPSv2.1: OpenCLIP ViT-H-14 fine-tuned on human preferences (the `open_clip` package, optional).

Local layout: <path>/HPS_v2.1_compressed.pt (the HPS checkpoint; its "state_dict" holds the
OpenCLIP weights). The score is cos(image, prompt) of the tuned model, about 0.25-0.40.
Needs the `hpsv2` extra (open_clip_torch, which requires torchvision).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from vgrpo.rewards.pil import to_pil_images
from vgrpo.utils.local_files import require_files

CHECKPOINT = "HPS_v2.1_compressed.pt"


class HPSv2Reward:
    """HPSv2.1 score per image ([B] float32)."""

    name = "hpsv2"

    def __init__(
        self,
        path: str | Path,
        *,
        architecture: str = "ViT-H-14",
        device: str | torch.device = "cpu",
        batch_size: int = 16,
    ):
        root = require_files(path, (CHECKPOINT,), "HPSv2.1")
        try:
            import open_clip
        except ImportError as exc:
            raise ImportError(
                "HPSv2.1 needs open_clip: pip install 'vgrpo[hpsv2]' (open_clip_torch, torchvision)"
            ) from exc
        self.device = torch.device(device)
        self.batch_size = batch_size
        model, _, preprocess = open_clip.create_model_and_transforms(architecture, pretrained=None)
        checkpoint = torch.load(root / CHECKPOINT, map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint.get("state_dict", checkpoint))
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(architecture)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            pil = to_pil_images(images[start : start + self.batch_size])
            pixels = torch.stack([self.preprocess(im) for im in pil]).to(self.device)
            text = self.tokenizer(list(prompts[start : start + self.batch_size])).to(self.device)
            image_f = self.model.encode_image(pixels, normalize=True)
            text_f = self.model.encode_text(text, normalize=True)
            out.append((image_f * text_f).sum(-1).float().cpu())
        return torch.cat(out)
