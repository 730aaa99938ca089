"""How repeatable is the shapes reward? Rewards of base-model samples under an imperceptible change
of the initial noise, and how the V-GRPO surrogate tracks the reward within a group.

    python -m vgrpo.experiments.reward_stability [--model DIR] [--prompts 48] [--group-size 8]
        [--angle 0.02] [--out runs/reward_stability]

One ODE rollout of the training prompts (the trainer's: 8-step DPM-Solver++, noise seeded per
sample) is repeated from the initial noise rotated by --angle radians towards independent noise,
eps' = cos(a) eps + sin(a) xi, which keeps eps' standard normal. Both batches are scored by the
current verifier (`vgrpo.rewards.shapes`) and by the one before graded shape credit
(`vgrpo.experiments.legacy_shapes_verifier`). Per verifier:
- changed: fraction of samples whose reward moves by more than 0.05 (and by more than 0.01);
- noise share: mean (r' - r)^2 / (2 x mean within-group variance of r), the share of the
  within-group reward variance (what the advantages are made of) that the rotation alone
  produces: 0 = fully repeatable, 1 = the advantages are noise;
- surrogate correlation: within-group Pearson correlation of the per-sample ELBO surrogate
  L(x_i) (N_MC = 4, batch-shared stratified pairs, averaged over --draws pair draws) with the
  reward, averaged over groups where both vary.
It also reports how many images visibly change: the fraction with at least 3 pixels moving by
more than 0.25 in some channel (a verifier cannot be stable where the image is not).
Writes reward_stability.json (and samples.pt, both batches) and prints a markdown table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from vgrpo.utils.offline import use_offline_environment

use_offline_environment()

import torch  # noqa: E402

from vgrpo.utils import cli  # noqa: E402

CHANGE_THRESHOLDS = (0.01, 0.05)
FLIP = 0.25  # a pixel "flips" when a channel moves by more than this


def rotated(noise: torch.Tensor, angle: float, seed: int) -> torch.Tensor:
    """noise rotated by `angle` radians towards independent standard-normal noise (same shape)."""
    xi = torch.randn(noise.shape, generator=torch.Generator().manual_seed(seed))
    return math.cos(angle) * noise + math.sin(angle) * xi


def within_group_correlation(a: torch.Tensor, b: torch.Tensor, group_size: int) -> tuple[float, int]:
    """Mean over groups of Pearson(a, b) for [N] values in groups of `group_size`, skipping groups
    where either is constant; returns (mean, groups used)."""
    a = a.double().view(-1, group_size)
    b = b.double().view(-1, group_size)
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    den = (a.square().sum(1) * b.square().sum(1)).sqrt()
    ok = den > 1e-12
    if not bool(ok.any()):
        return float("nan"), 0
    return float(((a * b).sum(1)[ok] / den[ok]).mean()), int(ok.sum())


def stability(r0: torch.Tensor, r1: torch.Tensor, group_size: int) -> dict[str, float]:
    """Change statistics of rewards r0 -> r1 ([N], groups of `group_size` contiguous)."""
    d = (r1 - r0).double()
    var = r0.double().view(-1, group_size).var(1, unbiased=True).mean()
    out = {f"changed_gt_{t}": float((d.abs() > t).double().mean()) for t in CHANGE_THRESHOLDS}
    out["mean_abs_change"] = float(d.abs().mean())
    out["noise_share"] = float(d.square().mean() / (2 * var)) if var > 0 else float("nan")
    out["mean_reward"] = float(r0.double().mean())
    out["within_group_std"] = float(var.sqrt())
    return out


@dataclass
class StabilityOptions:
    """The command line of `python -m vgrpo.experiments.reward_stability`."""

    model: str | None = None
    """Shapes model folder (None = the shipped default base)."""
    prompts: int = 48
    """Training prompts (cycled over categories)."""
    group_size: int = 8
    """Images per prompt."""
    angle: float = 0.02
    """Rotation of the initial noise, radians."""
    steps: int = 8
    """DPM-Solver++ steps of the rollout."""
    draws: int = 4
    """Pair draws averaged into each sample's surrogate."""
    seed: int = 0
    """Seed of the prompts' noise, the rotation and the pairs."""
    threads: int = 2
    """Torch CPU threads."""
    out: str = "runs/reward_stability"
    """Output folder."""


def _problems(o: StabilityOptions) -> list[str]:
    problems = []
    if min(o.prompts, o.steps, o.draws, o.threads) < 1 or o.group_size < 2:
        problems.append("--prompts, --steps, --draws, --threads must be >= 1 and --group_size >= 2")
    if not 0.0 < o.angle < math.pi / 2:
        problems.append("--angle must be in (0, pi/2)")
    return problems


def parse_args(argv: list[str] | None) -> StabilityOptions:
    return cli.parse(StabilityOptions, argv, __doc__, check=_problems)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from vgrpo.experiments.legacy_shapes_verifier import legacy_score
    from vgrpo.experiments.variance import surrogate_draws
    from vgrpo.models.shapes import ShapesAdapter
    from vgrpo.rewards.shapes import score
    from vgrpo.sampling.rollout import generate, group_inputs
    from vgrpo.tasks.shapes import eval_prompts, train_prompts_by_category

    model = ShapesAdapter.from_pretrained(args.model)
    prompts = eval_prompts(train_prompts_by_category(), args.prompts)[: args.prompts]  # cycling over categories
    cond, _, noise = group_inputs(model, prompts, list(range(len(prompts))), group_size=args.group_size,
                                  seed=args.seed, iteration=0)
    latents = [generate(model, cond, eps, steps=args.steps, solver="dpm++2m", shift=1.0)
               for eps in (noise, rotated(noise, args.angle, args.seed + 1))]
    images = [model.decode(x) for x in latents]
    sample_prompts = [p for p in prompts for _ in range(args.group_size)]

    def velocity(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model.velocity(z, t, cond.repeat_interleave(4))

    surrogate = surrogate_draws(velocity, latents[0], args.group_size, 4, args.draws, "batch", True, args.seed).mean(0)
    flips = ((images[1] - images[0]).abs().amax(1) > FLIP).flatten(1).sum(1)  # [N] pixels that flipped
    result = {"setup": cli.to_dict(args), "image_mean_abs_change": float((images[1] - images[0]).abs().mean()),
              "images_with_flipped_pixels": float((flips >= 3).double().mean())}
    for name, fn in (("current", score), ("legacy", legacy_score)):
        r0, r1 = fn(images[0], sample_prompts), fn(images[1], sample_prompts)
        row = stability(r0, r1, args.group_size)
        row["surrogate_correlation"], row["groups_used"] = within_group_correlation(surrogate, r0, args.group_size)
        result[name] = row
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"images": images, "prompts": sample_prompts}, out / "samples.pt")
    (out / "reward_stability.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{len(sample_prompts)} samples, rotation {args.angle} rad, mean |image change| "
          f"{result['image_mean_abs_change']:.4f}, images with >= 3 pixels flipped (> {FLIP}): "
          f"{result['images_with_flipped_pixels']:.3f}")
    print("| verifier | mean reward | within-group std | changed > 0.05 | changed > 0.01 | mean abs change "
          "| noise share | surrogate correlation |\n|---|---|---|---|---|---|---|---|")
    for name in ("legacy", "current"):
        r = result[name]
        print(f"| {name} | {r['mean_reward']:.3f} | {r['within_group_std']:.3f} | {r['changed_gt_0.05']:.3f} | "
              f"{r['changed_gt_0.01']:.3f} | {r['mean_abs_change']:.4f} | {r['noise_share']:.3f} | "
              f"{r['surrogate_correlation']:+.3f} |")
    return result


if __name__ == "__main__":
    main()
