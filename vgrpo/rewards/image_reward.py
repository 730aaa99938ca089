"""ImageReward (BLIP-based human-preference model) through the `image-reward` package (optional).

Local layout: <path>/ImageReward.pt and <path>/med_config.json (the files the package downloads).
Its BLIP text encoder also needs the `bert-base-uncased` tokenizer in the Hugging Face cache.
Scores are standardised logits, about -2 to 2. Needs the `imagereward` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from vgrpo.rewards.pil import to_pil_images
from vgrpo.utils.local_files import require_files


class ImageRewardReward:
    """ImageReward score per image ([B] float32)."""

    name = "imagereward"

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu"):
        root = require_files(path, ("ImageReward.pt", "med_config.json"), "ImageReward")
        try:
            import ImageReward as image_reward
        except ImportError as exc:
            raise ImportError("ImageReward needs the image-reward package: pip install 'vgrpo[imagereward]'") from exc
        self.model = image_reward.load(
            str(root / "ImageReward.pt"), device=str(device), med_config=str(root / "med_config.json")
        )
        self.model.eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        pil = to_pil_images(images)
        scores = [float(self.model.score(prompt, [im])) for prompt, im in zip(prompts, pil)]
        return torch.tensor(scores, dtype=torch.float32)
