"""Held-out evaluation (verifier score and GenEval-style accuracy per category), PNG sample grids,
and the reward-curve plot written at the end of a run.

Evaluation noise is fixed per (held-out prompt, image) and does not depend on the iteration or the
world size, so successive evaluations of a run compare the same draws.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import torch

from vgrpo.models.base import ModelAdapter
from vgrpo.trainer.distributed import STREAM_EVAL_NOISE, World, all_gather_objects
from vgrpo.trainer.rollout import generate, initial_noise


def eval_prompts(by_category: dict[str, list[str]], images_per_category: int) -> list[str]:
    """One prompt per evaluation image: `images_per_category` per category, cycling over its prompts.

    Categories are interleaved (image j belongs to category j mod C), so any prefix, such as the
    sample grid, covers every category.
    """
    cats = [ps for ps in by_category.values() if ps]
    return [ps[i % len(ps)] for i in range(images_per_category) for ps in cats]


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
    prompts: Sequence[str],
    world: World,
    *,
    seed: int,
    steps: int,
    solver: str,
    shift: float,
    cfg_scale: float = 1.0,
    batch_size: int = 64,
    grid_images: int = 0,
) -> tuple[dict[str, float], torch.Tensor | None]:
    """Generate one image per entry of `prompts` (see `eval_prompts`) and verify them.

    Image j's noise is drawn from generator(seed, eval stream, 0, j): the same at every evaluation.

    Returns (on rank 0; other ranks get ({}, None)):
        metrics: "score/<category>" (mean partial-credit verifier score), "accuracy/<category>"
            (fraction fully satisfied), and "score/overall", "accuracy/overall" (means over
            categories, as GenEval reports);
        grid: [min(grid_images, jobs), 3, H, W] float images of the first jobs, or None.
    """
    from vgrpo.rewards.shapes import verdicts
    from vgrpo.world.prompts import category

    total = len(prompts)
    jobs, real = _rank_slice(total, world)
    job_prompts = [prompts[j] for j in jobs]
    index = torch.tensor(jobs, dtype=torch.long)
    noise = initial_noise(adapter.latent_shape, seed, STREAM_EVAL_NOISE, 0, index)
    cond = adapter.encode_prompts(job_prompts)
    x0 = generate(
        adapter, cond, noise, steps=steps, solver=solver, shift=shift, cfg_scale=cfg_scale,
        batch_size=batch_size,
    )
    images = adapter.decode(x0).float().clamp(0, 1).cpu()
    found = verdicts(images[:real], job_prompts[:real])
    mine = [(j, v.score, v.satisfied) for j, v in zip(jobs[:real], found)]
    grid_part = [(j, (images[i] * 255).round().to(torch.uint8)) for i, j in enumerate(jobs[:real]) if j < grid_images]
    gathered = all_gather_objects((mine, grid_part))
    if not world.is_main:
        return {}, None
    scores: dict[str, list[float]] = defaultdict(list)
    hits: dict[str, list[float]] = defaultdict(list)
    grid = []
    for part, tiles in gathered:
        for j, s, ok in part:
            cat = category(prompts[j])
            scores[cat].append(s)
            hits[cat].append(1.0 if ok else 0.0)
        grid.extend(tiles)
    metrics: dict[str, float] = {}
    for cat in scores:
        metrics[f"score/{cat}"] = sum(scores[cat]) / len(scores[cat])
        metrics[f"accuracy/{cat}"] = sum(hits[cat]) / len(hits[cat])
    cats = list(scores)
    metrics["score/overall"] = sum(metrics[f"score/{c}"] for c in cats) / len(cats)
    metrics["accuracy/overall"] = sum(metrics[f"accuracy/{c}"] for c in cats) / len(cats)
    grid.sort(key=lambda item: item[0])
    tiles = torch.stack([t for _, t in grid]).float() / 255 if grid else None
    return metrics, tiles


def save_grid(images: torch.Tensor, path: str | Path, *, columns: int = 8, min_tile: int = 128) -> None:
    """Save images [N, 3, H, W] in [0, 1] as one PNG grid (tiles upscaled to >= min_tile pixels)."""
    from PIL import Image

    n, _, h, w = images.shape
    scale = max(1, math.ceil(min_tile / max(h, w)))
    imgs = torch.nn.functional.interpolate(images.float(), scale_factor=scale, mode="nearest") if scale > 1 else images
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    pad = 2
    th, tw = imgs.shape[-2:]
    canvas = torch.ones(3, rows * (th + pad) + pad, cols * (tw + pad) + pad)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = pad + r * (th + pad), pad + c * (tw + pad)
        canvas[:, y : y + th, x : x + tw] = imgs[i].clamp(0, 1)
    array = (canvas.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def plot_reward_curve(records: list[dict], path: str | Path) -> None:
    """Training reward (mean per iteration) and held-out verifier score vs iteration, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train" and isinstance(r.get("reward_mean"), (int, float))]
    evals = [r for r in records if r.get("kind") == "eval" and "score/overall" in r]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    if train:
        ax.plot([r["iteration"] + 1 for r in train], [r["reward_mean"] for r in train], label="train reward (mean)", alpha=0.8)
    if evals:
        ax.plot([r["iteration"] for r in evals], [r["score/overall"] for r in evals], "o-", label="held-out verifier score")
        if "accuracy/overall" in evals[0]:
            ax.plot([r["iteration"] for r in evals], [r["accuracy/overall"] for r in evals], "s--", label="held-out accuracy")
    ax.set_xlabel("iteration")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
