"""Fail fast: iterations without an update stop the run naming the cause; statistics stay finite."""

from __future__ import annotations

import math

import pytest
import torch

from tests.trainer_setups import ColorBalanceReward, tiny_adapter, tiny_config
from vgrpo.rewards.base import RewardSet
from vgrpo.trainer.metrics import read_metrics
from vgrpo.trainer.stall import SkipStreak, TrainingStalledError


class ConstantReward:
    """The same score for every image: every group has zero variance."""

    name = "constant"

    def __call__(self, images, prompts):
        return torch.full((images.shape[0],), 0.5)


class NanReward:
    name = "nan"

    def __call__(self, images, prompts):
        return torch.full((images.shape[0],), math.nan)


class HugeReward:
    """ColorBalance, except 1e38 for the first image of every batch."""

    name = "huge"

    def __call__(self, images, prompts):
        out = ColorBalanceReward()(images, prompts).clone()
        out[0] = 1e38
        return out


def _trainer(tmp_path, reward, **sections):
    from vgrpo.trainer.trainer import Trainer

    cfg = tiny_config(tmp_path, **sections)
    return Trainer(cfg, adapter_factory=tiny_adapter, reward_factory=lambda c, d: RewardSet([reward]))


@pytest.mark.parametrize("reward, cause", [(NanReward(), "no valid rewards"), (ConstantReward(), "zero-variance groups")])
def test_consecutive_skipped_iterations_stop_the_run_naming_the_cause(tmp_path, reward, cause):
    trainer = _trainer(tmp_path, reward, job=dict(iterations=6, max_skipped_iterations=3))
    before = [p.detach().clone() for p in trainer.params]
    with pytest.raises(TrainingStalledError, match=rf"3 consecutive iterations \(0-2\) made no update: {cause}"):
        trainer.train()
    rows = read_metrics(trainer.run_dir / "metrics.jsonl", "train")
    assert len(rows) == 3 and all(r["skipped_iteration"] == 1.0 and r["optimizer_steps"] == 0 for r in rows)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.params))


def test_non_finite_loss_in_every_step_stops_the_run(tmp_path):
    trainer = _trainer(tmp_path, ColorBalanceReward(), job=dict(iterations=4, max_skipped_iterations=2))
    real = trainer.algorithm.chunk_loss

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        out.loss = out.loss * math.nan
        return out

    trainer.algorithm.chunk_loss = poisoned
    with pytest.raises(TrainingStalledError, match="made no update: non-finite loss"):
        trainer.train()
    assert trainer.step == 0


def test_zero_disables_the_stop(tmp_path):
    trainer = _trainer(tmp_path, NanReward(), job=dict(iterations=3, max_skipped_iterations=0))
    assert trainer.train()["iterations"] == 3


def test_an_update_resets_the_streak():
    streak = SkipStreak(2)
    streak.record(0, "x")
    streak.record(1, None)
    streak.record(2, "x")
    with pytest.raises(TrainingStalledError, match=r"2 consecutive iterations \(2-3\) made no update: x x1; y x1"):
        streak.record(3, "y")


def test_entry_point_exits_non_zero_naming_the_cause(tmp_path, capsys):
    """The shapes verifier scores a random-weight model 0 everywhere: zero-variance groups, exit status 1."""
    from vgrpo import train

    status = train.main([
        "--model.init=random", f"--job.output_dir={tmp_path}", "--job.device=cpu", "--job.iterations=5",
        "--job.max_skipped_iterations=2", "--rollout.prompts_per_iteration=2", "--rollout.group_size=2",
        "--rollout.steps=1", "--algorithm.minibatches=1", "--eval.every=-1", "--checkpoint.every=-1",
        "--logging.progress=false", "--logging.tensorboard=false",
    ])
    assert status == 1
    assert "2 consecutive iterations (0-1) made no update: zero-variance groups" in capsys.readouterr().err


def test_huge_rewards_keep_logged_statistics_finite(tmp_path):
    trainer = _trainer(tmp_path, HugeReward(), job=dict(iterations=1))
    trainer.train()
    row = read_metrics(trainer.run_dir / "metrics.jsonl", "train")[0]
    for key in ("reward_mean", "reward_std", "reward/huge"):
        assert math.isfinite(row[key]), key
    assert row["reward_mean"] == pytest.approx(1e38 / 8, rel=1e-3)


def test_non_finite_images_are_invalid_and_never_scored():
    seen = []

    class Recording:
        name = "recording"

        def __call__(self, images, prompts):
            seen.append((images.clone(), list(prompts)))
            return torch.ones(images.shape[0])

    images = torch.rand(4, 3, 8, 8)
    images[1, 0, 2, 2] = math.nan
    images[3, 2, 0, 0] = math.inf
    out = RewardSet([Recording()])(images, ["a", "b", "c", "d"])
    assert out.valid.tolist() == [True, False, True, False]
    assert math.isnan(out.scores[1, 0]) and out.scores[0, 0] == 1.0
    assert len(seen) == 1 and seen[0][1] == ["a", "c"] and bool(torch.isfinite(seen[0][0]).all())
