"""The five-linear score head shared by the LAION aesthetic predictor and ImageReward.

Both publish it as `layers = nn.Sequential(Linear(E, 1024), Dropout, Linear(1024, 128), Dropout,
Linear(128, 64), Dropout, Linear(64, 16), Linear(16, 1))` with no activations (improved-aesthetic-
predictor `simple_inference.py` MLP; ImageReward `ImageReward/ImageReward.py` MLP), so the state
dict keys are layers.{0,2,4,6,7}.{weight,bias}.
"""

from __future__ import annotations

import torch
from torch import nn


class ScoreMLP(nn.Module):
    """[B, E] features -> [B, 1] score (E = 768 for CLIP ViT-L/14 image and BLIP text features)."""

    def __init__(self, embed_dim: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(embed_dim, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)
