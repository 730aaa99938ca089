"""Rewards scored chunk by chunk on a worker thread equal the whole-batch scores, failures included."""

from __future__ import annotations

import math
import threading

import pytest
import torch

from vgrpo.models.shapes import ShapesAdapter
from vgrpo.rewards.base import RewardSet
from vgrpo.trainer.reward_overlap import ChunkScorer
from vgrpo.sampling.rollout import rollout


class Brightness:
    """Mean pixel value; records the threads it ran on."""

    name = "brightness"

    def __init__(self):
        self.threads: set[str] = set()

    def __call__(self, images, prompts):
        self.threads.add(threading.current_thread().name)
        return images.mean(dim=(1, 2, 3))


class FailsOnBrightImages:
    """Raises on a batch that holds an image brighter than 0.5 (so per-image rescoring isolates it)."""

    name = "fragile"

    def __call__(self, images, prompts):
        m = images.mean(dim=(1, 2, 3))
        if bool((m > 0.5).any()):
            raise RuntimeError("reward model crashed")
        return -m


def _images(n: int) -> torch.Tensor:
    return torch.linspace(0.05, 0.95, n).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()


def _feed(scorer: ChunkScorer, x: torch.Tensor, chunk: int) -> None:
    for start in range(0, x.shape[0], chunk):
        stop = min(start + chunk, x.shape[0])
        scorer(start, stop, x[start:stop])


@pytest.mark.parametrize("overlap", [True, False])
def test_chunked_scores_equal_whole_batch_scores(overlap):
    x = _images(11)
    prompts = [f"p{i}" for i in range(11)]
    rewards = RewardSet([Brightness(), FailsOnBrightImages()], weights=[1.0, 0.5])
    whole = rewards(x, prompts)
    scorer = ChunkScorer(lambda z: z, rewards, prompts, overlap=overlap)
    _feed(scorer, x, chunk=4)  # 4 + 4 + 3: the last chunk is short
    got = scorer.result()
    assert got.names == whole.names
    torch.testing.assert_close(got.scores, whole.scores, equal_nan=True, rtol=0, atol=0)
    assert torch.equal(got.valid, whole.valid)
    assert int((~got.valid).sum()) == 5  # the bright images failed and are dropped, the rest kept
    assert math.isnan(float(got.scores[-1, 1]))


def test_overlap_scores_on_a_worker_thread():
    bright = Brightness()
    scorer = ChunkScorer(lambda z: z, RewardSet([bright]), ["p"] * 6, overlap=True)
    _feed(scorer, _images(6), chunk=2)
    scorer.result()
    assert bright.threads and all(name.startswith("rewards") for name in bright.threads)


def test_decode_error_is_raised_by_result():
    def broken_decode(z):
        raise RuntimeError("VAE out of memory")

    scorer = ChunkScorer(broken_decode, RewardSet([Brightness()]), ["p"] * 4, overlap=True)
    _feed(scorer, _images(4), chunk=2)
    with pytest.raises(RuntimeError, match="VAE out of memory"):
        scorer.result()


def test_chunks_must_cover_the_batch_once():
    scorer = ChunkScorer(lambda z: z, RewardSet([Brightness()]), ["p"] * 6, overlap=False)
    scorer(0, 2, _images(2))
    scorer(4, 6, _images(2))
    with pytest.raises(ValueError, match="do not cover the 6 samples"):
        scorer.result()
    with pytest.raises(ValueError, match="does not fit a batch of 6"):
        ChunkScorer(lambda z: z, RewardSet([Brightness()]), ["p"] * 6)(4, 8, _images(4))


def test_rollout_hands_each_finished_chunk_to_the_scorer():
    adapter = ShapesAdapter.random(seed=0)
    seen: list[tuple[int, int, torch.Tensor]] = []
    batch = rollout(
        adapter, ["a red circle", "two squares"], [0, 1], iteration=0, seed=0, group_size=3, steps=2,
        solver="euler", shift=1.0, batch_size=4, on_chunk=lambda s, e, x: seen.append((s, e, x.clone())),
    )
    assert [(s, e) for s, e, _ in seen] == [(0, 4), (4, 6)]
    torch.testing.assert_close(torch.cat([x for _, _, x in seen]), batch.x0, rtol=0, atol=0)


@pytest.mark.parametrize("algorithm", ["vgrpo", "flowgrpo"])
def test_training_with_overlapped_rewards_matches_scoring_after_the_rollout(tmp_path, algorithm):
    from tests.trainer_setups import run, tiny_config
    from vgrpo.trainer.metrics import read_metrics

    rows = {}
    for overlap in (True, False):
        cfg = tiny_config(
            tmp_path / str(overlap), job=dict(iterations=1), reward=dict(overlap="on" if overlap else "off"),
            rollout=dict(batch_size=3),  # 8 samples in chunks of 3, 3 and 2
            algorithm=dict(name=algorithm, clip_range=1e-4 if algorithm == "flowgrpo" else 1e-2),
        )
        rows[overlap] = read_metrics(run(cfg).run_dir / "metrics.jsonl", "train")[0]
    for key in ("reward_mean", "reward_std", "policy_loss", "grad_norm"):
        assert rows[True][key] == rows[False][key], key
