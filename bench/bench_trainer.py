"""Trainer throughput: rollout images/s (deterministic ODE sampling) and update samples/s
(behaviour scoring + one pass of gradient steps over the ELBO surrogate), on the shipped
architecture of the shapes world (random weights: throughput does not depend on them).

Run: `pytest bench/bench_trainer.py --benchmark-only --benchmark-json=bench/results/<machine>-trainer.json`.
Derived figures are in each benchmark's extra_info (images_per_s, samples_per_s).
"""

from __future__ import annotations

import os

import pytest
import torch

from bench.memory import device_name
from vgrpo.objective import group_advantages
from vgrpo.trainer.config import Config
from vgrpo.sampling.rollout import local_prompt_indices, rollout

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
PROMPTS, GROUP = (4, 8) if DEVICE.type == "cpu" else (32, 16)


def _config(tmp_path, **algorithm) -> Config:
    cfg = Config()
    cfg.job.output_dir, cfg.job.name, cfg.job.device = str(tmp_path), "bench", DEVICE.type
    cfg.model.init = "random"
    cfg.rollout.prompts_per_iteration, cfg.rollout.group_size = PROMPTS, GROUP
    cfg.rollout.solver, cfg.rollout.steps = "dpm++2m", 12
    cfg.eval.every = cfg.checkpoint.every = -1
    cfg.logging.tensorboard = cfg.logging.progress = False
    for k, v in algorithm.items():
        setattr(cfg.algorithm, k, v)
    return cfg


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vgrpo.trainer.trainer import Trainer

    return Trainer(_config(tmp_path_factory.mktemp("bench"), num_pairs=4, mu=1, minibatches=2))


def _rollout(trainer):
    prompts = trainer.iteration_prompts(0)
    mine = local_prompt_indices(len(prompts), 1, 0, trainer.cfg.algorithm.minibatches)
    r = trainer.cfg.rollout
    return rollout(
        trainer.adapter, [prompts[i] for i in mine], mine, iteration=0, seed=0, group_size=r.group_size,
        steps=r.steps, solver=r.solver, shift=r.shift, batch_size=r.batch_size,
    )


def _extra(benchmark, trainer, count: int, unit: str) -> None:
    benchmark.extra_info[unit] = count / benchmark.stats.stats.median
    benchmark.extra_info["device"] = device_name(DEVICE)
    r, a = trainer.cfg.rollout, trainer.cfg.algorithm
    benchmark.extra_info["config"] = {
        "prompts": r.prompts_per_iteration, "group_size": r.group_size, "solver": r.solver, "steps": r.steps,
        "num_pairs": a.num_pairs, "minibatches": a.minibatches, "finetune": trainer.cfg.finetune.mode,
    }


def test_rollout_images_per_s(benchmark, trainer):
    def run():
        batch = _rollout(trainer)
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        return batch

    benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    _extra(benchmark, trainer, PROMPTS * GROUP, "images_per_s")


def test_update_samples_per_s(benchmark, trainer):
    batch = _rollout(trainer)
    rewards = torch.randn(batch.size)
    adv = group_advantages(rewards, GROUP).to(DEVICE)

    def run():
        out = trainer._update(batch, adv, iteration=0)  # draws the pairs, scores, steps
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        return out

    benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    _extra(benchmark, trainer, batch.size, "samples_per_s")


@pytest.mark.parametrize("overlap", [False, True], ids=["rewards-after-rollout", "rewards-overlapped"])
def test_rollout_and_rewards_images_per_s(benchmark, trainer, overlap):
    """Rollout plus decode + verifier rewards, in chunks of 8 images: scored after the whole rollout
    vs each chunk scored on a worker thread while the next one is sampled (`reward.overlap`)."""
    from vgrpo.trainer.reward_overlap import ChunkScorer

    prompts = trainer.iteration_prompts(0)
    mine = local_prompt_indices(len(prompts), 1, 0, trainer.cfg.algorithm.minibatches)
    local = [prompts[i] for i in mine]
    r = trainer.cfg.rollout

    def run():
        scorer = ChunkScorer(trainer.adapter.decode, trainer.rewards, [p for p in local for _ in range(GROUP)],
                             overlap=overlap)
        rollout(trainer.adapter, local, mine, iteration=0, seed=0, group_size=GROUP, steps=r.steps,
                solver=r.solver, shift=r.shift, batch_size=8, on_chunk=scorer)
        return scorer.result()

    benchmark.pedantic(run, rounds=3, warmup_rounds=1, iterations=1)
    _extra(benchmark, trainer, PROMPTS * GROUP, "images_per_s")
