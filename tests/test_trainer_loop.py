"""The training loop: ratio exactly 1 at the start of every iteration, drift visible afterwards,
NaN/inf handling, and what a run leaves in its folder."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.trainer_setups import ColorBalanceReward, run, tiny_adapter, tiny_config
from vgrpo.rewards.base import RewardSet
from vgrpo.trainer.metrics import read_metrics


def train_rows(trainer):
    return read_metrics(trainer.run_dir / "metrics.jsonl", "train")


@pytest.mark.parametrize("reuse", [False, True])
def test_ratio_is_one_at_the_start_of_every_iteration(tmp_path, reuse):
    # Two minibatches x two passes, micro-batches of 2: the scoring pass must see the update's shapes.
    cfg = tiny_config(
        tmp_path,
        algorithm=dict(minibatches=2, mu=2, micro_batch=2, reuse_first_surrogate=reuse),
        rollout=dict(prompts_per_iteration=2),
    )
    rows = train_rows(run(cfg))
    assert len(rows) == 2
    for row in rows:
        assert row["ratio_first_absdev"] == 0.0  # exactly 1, not approximately
        assert row["optimizer_steps"] > 0 and row["skipped_steps"] == 0
        # later steps see an updated policy: the ratio moves and the spread is logged
        assert row["ratio_max"] > 1.0 or row["ratio_min"] < 1.0
        assert row["log_ratio_std"] >= 0.0
    assert rows[-1]["optimizer_steps"] == 2 * 2 * 2


def test_kl_is_zero_at_first_step_and_logged(tmp_path):
    cfg = tiny_config(tmp_path, algorithm=dict(beta=0.3, mu=2, clip_range=0.0), job=dict(iterations=1))
    row = train_rows(run(cfg))[0]
    assert row["ratio_first_absdev"] == 0.0
    assert row["kl"] > 0.0  # the second pass moved away from the stored behaviour predictions


@pytest.mark.parametrize("target", ["behaviour", "reference"])
def test_kl_target_reference_measures_the_drift_from_the_base_model(tmp_path, target):
    # One optimizer step per iteration: theta is theta_old at every step, so the behaviour KL is 0
    # throughout, while the reference KL is 0 only before the first step (LoRA B starts at zero).
    cfg = tiny_config(
        tmp_path, job=dict(iterations=2),
        algorithm=dict(beta=0.3, kl_target=target, mu=1, minibatches=1, clip_range=0.0),
    )
    rows = train_rows(run(cfg))
    assert rows[0]["kl"] == 0.0
    assert (rows[1]["kl"] > 0.0) == (target == "reference")
    assert rows[1]["nfe_old"] == (2.0 if target == "reference" else 0.0)  # N_MC = 2 reference forwards


def test_cosine_schedule_spans_the_run(tmp_path):
    # 3 iterations x mu 2 x 1 minibatch = 6 optimizer steps; the floor is reached at the last one.
    cfg = tiny_config(tmp_path, job=dict(iterations=3), optim=dict(schedule="cosine", final_lr_ratio=0.2))
    lrs = [row["lr"] for row in train_rows(run(cfg))]
    assert lrs[0] < 1e-3 and lrs[0] > lrs[1] > lrs[2]
    assert lrs[2] == pytest.approx(1e-3 * 0.2, rel=1e-9)


def test_run_folder_outputs(tmp_path):
    cfg = tiny_config(
        tmp_path, eval=dict(every=1, images_per_category=1, grid_images=4),
        logging=dict(tensorboard=True), checkpoint=dict(every=1, keep_last=1),
    )
    trainer = run(cfg)
    folder = trainer.run_dir
    saved = json.loads((folder / "config.json").read_text())
    assert saved["rollout"]["group_size"] == 4 and saved["algorithm"]["num_pairs"] == 2
    evals = read_metrics(folder / "metrics.jsonl", "eval")
    assert [e["iteration"] for e in evals] == [0, 1, 2]
    assert {"score/overall", "accuracy/overall"} <= set(evals[0])
    assert all(0.0 <= e["score/overall"] <= 1.0 for e in evals)
    assert sorted(p.name for p in (folder / "samples").glob("*.png")) == [
        "iter-000000.png", "iter-000001.png", "iter-000002.png"]
    assert (folder / "reward_curve.png").stat().st_size > 0
    assert any((folder / "tensorboard").iterdir())
    assert [p.name for p in trainer.checkpointer.complete()] == ["step-000002"]  # keep_last=1
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["iterations"] == 2


class FlakyReward:
    """NaN for the first image of every batch; finite elsewhere."""

    name = "flaky"

    def __call__(self, images, prompts):
        out = ColorBalanceReward()(images, prompts).clone()
        out[0] = math.nan
        return out


def test_nan_reward_drops_the_sample_not_the_run(tmp_path):
    from vgrpo.trainer.trainer import Trainer

    cfg = tiny_config(tmp_path, job=dict(iterations=1))
    trainer = Trainer(cfg, adapter_factory=tiny_adapter, reward_factory=lambda c, d: RewardSet([FlakyReward()]))
    trainer.train()
    row = train_rows(trainer)[0]
    assert row["valid_fraction"] == pytest.approx(7 / 8)
    assert math.isfinite(row["reward_mean"]) and row["skipped_steps"] == 0


def test_nan_loss_skips_the_step_and_never_reaches_a_checkpoint(tmp_path):
    from vgrpo.trainer.trainer import Trainer

    cfg = tiny_config(tmp_path, job=dict(iterations=1), algorithm=dict(mu=2), checkpoint=dict(every=1))
    trainer = Trainer(cfg, adapter_factory=tiny_adapter, reward_factory=lambda c, d: RewardSet([ColorBalanceReward()]))
    real = trainer.algorithm.chunk_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # the second optimizer step's loss is NaN
            out.loss = out.loss * math.nan
        return out

    trainer.algorithm.chunk_loss = poisoned
    before = [p.detach().clone() for p in trainer.params]
    trainer.train()
    row = train_rows(trainer)[0]
    assert row["skipped_steps"] == 1 and row["optimizer_steps"] == 1
    assert all(torch.isfinite(p).all() for p in trainer.params)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.params))  # the good step applied
    assert [p.name for p in trainer.checkpointer.complete()] == ["step-000001"]
