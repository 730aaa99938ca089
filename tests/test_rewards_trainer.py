"""The five model rewards in one environment drive a tiny training run (2 iterations, CPU).

`--reward.names=hpsv2,imagereward,pickscore,clipscore,aesthetic` with tiny random checkpoints:
HPSv2.1 and ImageReward in their ORIGINAL release formats (loaded directly, keys mapped on load),
PickScore / CLIPScore / aesthetic as transformers CLIP directories.
"""

import math
import shutil

import torch

from tests.tiny_clip import make_tiny_clip_dir
from tests.tiny_reward_models import tiny_hpsv2_dir, tiny_image_reward_dir
from tests.trainer_setups import tiny_adapter, tiny_config
from vgrpo.rewards.aesthetic import CLIP_SUBDIR, MLP_FILE
from vgrpo.rewards.mlp_head import ScoreMLP
from vgrpo.trainer.config import apply_overrides, validate

NAMES = ["hpsv2", "imagereward", "pickscore", "clipscore", "aesthetic"]


def test_five_model_rewards_train_a_tiny_model_for_two_iterations(tmp_path):
    from vgrpo.trainer.trainer import Trainer

    clip = make_tiny_clip_dir(tmp_path / "clip")
    aesthetic = tmp_path / "aesthetic"
    shutil.copytree(clip, aesthetic / CLIP_SUBDIR)
    torch.manual_seed(0)
    torch.save(ScoreMLP(embed_dim=16).state_dict(), aesthetic / MLP_FILE)
    paths = [tiny_hpsv2_dir(), tiny_image_reward_dir(), clip, clip, aesthetic]
    cfg = apply_overrides(tiny_config(tmp_path / "runs"), [
        f"--reward.names={','.join(NAMES)}",
        f"--reward.paths={','.join(str(p) for p in paths)}",
        "--reward.weights=1,1,0.05,0.01,0.2",
    ])
    validate(cfg)
    trainer = Trainer(cfg, adapter_factory=tiny_adapter)
    assert trainer.rewards.names == NAMES
    before = [p.detach().clone() for p in trainer.params]
    trainer.train()
    assert len(trainer.history) == 2
    for metrics in trainer.history:
        for name in NAMES:
            assert math.isfinite(metrics[f"reward/{name}"]), (name, metrics)
        assert math.isfinite(metrics["reward_mean"])
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.params))  # the rewards drove updates
