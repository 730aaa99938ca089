"""LAION aesthetic predictor v2: an MLP on L2-normalised CLIP ViT-L/14 image embeddings.

Layout of the local directory (the public release, as DDPO and Flow-GRPO use it):
    <path>/sac+logos+ava1-l14-linearMSE.pth    the MLP's state dict (keys layers.{0,2,4,6,7}.*)
    <path>/clip-vit-large-patch14/              transformers CLIPModel + processor (openai release)
The score is about 1-10 (higher is more aesthetic); the prompt is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from vgrpo.rewards.clip_similarity import MODEL_FILES, PROCESSOR_FILES, _features
from vgrpo.rewards.pil import to_pil_images
from vgrpo.utils.local_files import require_files

MLP_FILE = "sac+logos+ava1-l14-linearMSE.pth"
CLIP_SUBDIR = "clip-vit-large-patch14"


class AestheticMLP(nn.Module):
    """The predictor head: [B, E] normalised embeddings -> [B, 1] score (E = 768 for ViT-L/14)."""

    def __init__(self, embed_dim: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(embed_dim, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.layers(embeds)


class AestheticReward:
    """LAION aesthetic score of each image ([B] float32)."""

    name = "aesthetic"

    def __init__(self, path: str | Path, *, device: str | torch.device = "cpu", batch_size: int = 32):
        from transformers import AutoProcessor, CLIPModel

        root = require_files(path, (MLP_FILE, CLIP_SUBDIR), "aesthetic predictor")
        clip_dir = require_files(root / CLIP_SUBDIR, MODEL_FILES + PROCESSOR_FILES, "aesthetic CLIP model")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.processor = AutoProcessor.from_pretrained(clip_dir, local_files_only=True)
        self.clip = CLIPModel.from_pretrained(clip_dir, local_files_only=True).eval().requires_grad_(False)
        state = torch.load(root / MLP_FILE, map_location="cpu", weights_only=True)
        self.mlp = AestheticMLP(embed_dim=state["layers.0.weight"].shape[1])
        self.mlp.load_state_dict(state)
        self.mlp.eval().requires_grad_(False)
        self.clip.to(self.device)
        self.mlp.to(self.device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            pil = to_pil_images(images[start : start + self.batch_size])
            pixels = self.processor(images=pil, return_tensors="pt")["pixel_values"].to(self.device)
            embeds = _features(self.clip.get_image_features(pixel_values=pixels)).float()
            embeds = embeds / embeds.norm(dim=-1, keepdim=True)
            out.append(self.mlp(embeds).squeeze(1).cpu())
        return torch.cat(out)
