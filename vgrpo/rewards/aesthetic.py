"""LAION aesthetic predictor v2: an MLP on L2-normalised CLIP ViT-L/14 image embeddings.

Layout of the local directory (the public release, as DDPO and Flow-GRPO use it):
    <path>/sac+logos+ava1-l14-linearMSE.pth    the MLP's state dict (keys layers.{0,2,4,6,7}.*)
    <path>/clip-vit-large-patch14/              transformers CLIPModel + processor (openai release)
Images are preprocessed on their device (vgrpo.rewards.image_transform, the processor's config).
The score is about 1-10 (higher is more aesthetic); the prompt is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from vgrpo.rewards.clip_similarity import MODEL_FILES, PROCESSOR_FILES, image_features, load_clip
from vgrpo.rewards.image_transform import clip_processor_transform
from vgrpo.rewards.mlp_head import ScoreMLP
from vgrpo.utils.local_files import require_files

MLP_FILE = "sac+logos+ava1-l14-linearMSE.pth"
CLIP_SUBDIR = "clip-vit-large-patch14"


class AestheticReward:
    """LAION aesthetic score of each image ([B] float32)."""

    name = "aesthetic"

    def __init__(
        self,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 32,
    ):
        root = require_files(path, (MLP_FILE, CLIP_SUBDIR), "aesthetic predictor")
        clip_dir = require_files(root / CLIP_SUBDIR, MODEL_FILES + PROCESSOR_FILES, "aesthetic CLIP model")
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.transform = clip_processor_transform(clip_dir)
        self.clip = load_clip(clip_dir, dtype, self.device)
        state = torch.load(root / MLP_FILE, map_location="cpu", weights_only=True)
        self.mlp = ScoreMLP(embed_dim=state["layers.0.weight"].shape[1])
        self.mlp.load_state_dict(state)
        self.mlp.eval().requires_grad_(False).to(self.device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            pixels = self.transform(images[start : start + self.batch_size].to(self.device), self.dtype)
            embeds = image_features(self.clip, pixels).float()
            embeds = embeds / embeds.norm(dim=-1, keepdim=True)
            out.append(self.mlp(embeds).squeeze(1).cpu())
        return torch.cat(out)
