"""Small, fast trainer set-ups shared by the trainer tests and the torchrun worker.

The built-in verifier gives a random-weight model a reward of 0 everywhere (no learning signal),
so these runs use `ColorBalanceReward`, a dense pixel statistic that varies between samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from vgrpo.rewards.base import RewardSet
from vgrpo.trainer.config import Config


class ColorBalanceReward:
    """Mean red minus mean blue intensity of each image: [B, 3, H, W] in [0, 1] -> [B] in [-1, 1]."""

    name = "color_balance"

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        return images[:, 0].mean(dim=(1, 2)) - images[:, 2].mean(dim=(1, 2))


def tiny_adapter(cfg: Config, device: torch.device):
    """The shapes architecture with one transformer block and seeded random weights."""
    from vgrpo.models.shapes import ShapesAdapter

    return ShapesAdapter.random(seed=cfg.job.seed, num_layers=1).to(device, torch.float32)


def color_rewards(cfg: Config, device: torch.device) -> RewardSet:
    return RewardSet([ColorBalanceReward()])


def tiny_config(run_root: str | Path, **sections: dict) -> Config:
    """A few-second run: 2 prompts x 4 images, 2 solver steps, 2 pairs, no eval/checkpoints."""
    cfg = Config()
    cfg.job.output_dir = str(run_root)
    cfg.job.name = "run"
    cfg.job.iterations = 2
    cfg.job.device = "cpu"
    cfg.model.init = "random"
    cfg.rollout.prompts_per_iteration = 2
    cfg.rollout.group_size = 4
    cfg.rollout.steps = 2
    cfg.rollout.solver = "euler"
    cfg.algorithm.num_pairs = 2
    cfg.algorithm.mu = 2
    cfg.algorithm.minibatches = 1
    cfg.optim.lr = 1e-3
    cfg.eval.every = -1
    cfg.checkpoint.every = -1
    cfg.logging.tensorboard = False
    cfg.logging.progress = False
    for section, values in sections.items():
        for key, value in values.items():
            setattr(getattr(cfg, section), key, value)
    return cfg


def run(cfg: Config):
    """Train `cfg` with the tiny model and the color reward; returns the Trainer."""
    from vgrpo.trainer.trainer import Trainer

    trainer = Trainer(cfg, adapter_factory=tiny_adapter, reward_factory=color_rewards)
    trainer.train()
    return trainer
