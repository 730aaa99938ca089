"""Evaluation during training for any model: the run's `Evaluator` (vgrpo.tasks) scored on images
of a fixed prompt set with fixed noise, a sample grid captioned with the prompts, and the
reward-curve plot written at the end of a run.

Evaluation noise is fixed per evaluation image and does not depend on the iteration or the world
size, so successive evaluations of a run compare the same draws.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import torch

from vgrpo.models.base import ModelAdapter
from vgrpo.rewards.base import RewardSet
from vgrpo.sampling.rollout import generate, initial_noise
from vgrpo.tasks.base import Evaluator
from vgrpo.trainer.config import Config
from vgrpo.utils.distributed import STREAM_EVAL_NOISE, World, all_gather_objects

log = logging.getLogger(__name__)


def build_evaluator(cfg: Config, train_rewards: RewardSet, device: torch.device | str = "cpu") -> Evaluator | None:
    """The run's evaluator: `eval.prompt_file` with `eval.rewards` (default: the training rewards),
    else the model family's built-in task (`vgrpo.tasks.registry`: the shapes world's held-out
    verifier evaluation); None (with a warning) for a family without one (flux / sd3) and no prompt file."""
    from vgrpo.tasks.prompt_set import PromptSetEvaluator
    from vgrpo.tasks.registry import BUILT_IN_EVALUATORS
    from vgrpo.utils.prompt_file import read_prompt_records

    e = cfg.eval
    rewards = eval_rewards(cfg, train_rewards, device)
    if e.prompt_file is not None:
        return PromptSetEvaluator(read_prompt_records(e.prompt_file), rewards or train_rewards, e.images_per_prompt)
    if cfg.model.name in BUILT_IN_EVALUATORS:
        return BUILT_IN_EVALUATORS[cfg.model.name](e.images_per_category, rewards)
    log.warning("no evaluation: model.name=%s has no built-in prompt set; set eval.prompt_file", cfg.model.name)
    return None


def eval_rewards(cfg: Config, train_rewards: RewardSet, device: torch.device | str = "cpu") -> RewardSet | None:
    """The RewardSet of `eval.rewards` (None when empty); a reward the run trains with under the
    same path is reused, not loaded twice."""
    from vgrpo.rewards.registry import JUDGE_REWARDS, RewardSpec, build_reward

    e, w = cfg.eval, cfg.reward
    if not e.rewards:
        return None
    paths = [None if p in ("", "none") else p for p in e.reward_paths] or [None] * len(e.rewards)
    train_paths = [None if p in ("", "none") else p for p in w.paths] or [None] * len(w.names)
    loaded = {(n, p): r for n, p, r in zip(w.names, train_paths, train_rewards.rewards)}
    judge = dataclasses.asdict(w.judge)
    out = []
    for name, path in zip(e.rewards, paths):
        reward = loaded.get((name, path))
        if reward is None or getattr(reward, "name", None) != name:
            options = dict(judge) if name in JUDGE_REWARDS else {}
            reward = build_reward(name, path, device=device, **options)
        out.append(reward)
    return RewardSet(out)


def _rank_slice(total: int, world: World) -> tuple[list[int], int]:
    """Contiguous job indices of this rank, padded (repeating its last job) to an equal count.

    Every rank must run the same number of forward passes under FSDP. Returns (jobs, real count).
    """
    per = math.ceil(total / world.world_size)
    start = min(world.rank * per, total)
    real = list(range(start, min(start + per, total)))
    pad = real[-1:] if real else [total - 1]
    return real + pad * (per - len(real)), len(real)


@torch.no_grad()
def evaluate(
    adapter: ModelAdapter,
    evaluator: Evaluator,
    world: World,
    *,
    seed: int,
    steps: int,
    solver: str,
    shift: float,
    cfg_scale: float = 1.0,
    batch_size: int = 64,
    grid_images: int = 0,
):
    """Generate one image per evaluation prompt with the deterministic ODE sampler and score it.

    Image j's noise is drawn from generator(seed, eval stream, 0, j): the same at every evaluation.
    Each rank generates and scores a contiguous share of the images, `batch_size` at a time.

    Returns (on rank 0; other ranks get ({}, None)):
        metrics: `evaluator.summarise` of every image's values;
        grid: a PIL image of the first `grid_images` images, each captioned with its prompt, or None.
    """
    prompts = evaluator.prompts
    jobs, real = _rank_slice(len(prompts), world)
    job_prompts = [prompts[j] for j in jobs]
    index = torch.tensor(jobs, dtype=torch.long)
    noise = initial_noise(adapter.latent_shape, seed, STREAM_EVAL_NOISE, 0, index)
    cond = adapter.encode_prompts(job_prompts)
    x0 = generate(
        adapter, cond, noise, steps=steps, solver=solver, shift=shift, cfg_scale=cfg_scale,
        batch_size=batch_size,
    )
    values, grid_part = [], []
    for start in range(0, real, batch_size):  # decode and score chunk by chunk: no float copy of every image
        chunk = jobs[start : min(start + batch_size, real)]
        images = adapter.decode(x0[start : start + len(chunk)]).float().clamp(0, 1)
        values += evaluator.score(images, chunk)
        grid_part += [(j, (images[i] * 255).round().to(torch.uint8).cpu()) for i, j in enumerate(chunk) if j < grid_images]
    mine = list(zip(jobs[:real], values))
    gathered = all_gather_objects((mine, grid_part))
    if not world.is_main:
        return {}, None
    scored = sorted((item for part, _ in gathered for item in part), key=lambda item: item[0])
    metrics = evaluator.summarise([v for _, v in scored])
    tiles = sorted((t for _, part in gathered for t in part), key=lambda item: item[0])
    grid = None
    if tiles:
        from vgrpo.utils.image_grid import image_grid

        grid = image_grid(torch.stack([t for _, t in tiles]).float() / 255, [prompts[j] for j, _ in tiles],
                          columns=evaluator.grid_columns)
    return metrics, grid


def plot_reward_curve(records: list[dict], path: str | Path) -> None:
    """Training reward (mean per iteration) and the evaluations' headline metrics (the held-out
    verifier score and accuracy, or each eval reward's mean) vs iteration, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train" and isinstance(r.get("reward_mean"), (int, float))]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    if train:
        ax.plot([r["iteration"] + 1 for r in train], [r["reward_mean"] for r in train], label="train reward (mean)", alpha=0.8)
    labels = {"score/overall": "held-out verifier score", "accuracy/overall": "held-out accuracy"}
    keys = [k for k in (evals[0] if evals else {}) if k in labels or (k.startswith("reward/") and k.count("/") == 1)]
    for k, style in zip(keys, ["o-", "s--", "^-.", "v:"] * 8):
        points = [(r["iteration"], r[k]) for r in evals if isinstance(r.get(k), (int, float))]
        ax.plot([i for i, _ in points], [v for _, v in points], style, label=labels.get(k, f"eval {k}"))
    ax.set_xlabel("iteration")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
