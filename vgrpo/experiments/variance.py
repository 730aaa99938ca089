"""The variance-reduction ablation measured directly: surrogate CV of a fixed rollout batch of the
base model under each pair-drawing scheme (method.md section 3), without training.

    python -m vgrpo.experiments.variance [--out runs/compare/variance] [--prompts 8] [--group-size 8] [--draws 16]

The batch is fixed (one ODE rollout of the shapes base model on training prompts); only the
timestep-noise pairs change. Per scheme and per draw, `surrogate_cv` gives the CV of the per-sample
surrogate L(x_i) over the batch and within prompt groups (the paper's two numbers); the table
reports their means over draws. It also reports the estimator noise: the std over draws of each
sample's within-group-centred surrogate L(x_i) - mean_group L, relative to the mean absolute size
of that centred value. That is the part of the surrogate the advantages act on, so it is the
noise the update sees. Writes variance.json and variance.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from vgrpo.objective import draw_pairs, surrogate_cv
from vgrpo.ops import elbo_surrogate, noise_latents
from vgrpo.utils import cli

SCHEMES: tuple[tuple[str, str, bool], ...] = (
    ("independent, uniform t", "none", False),
    ("independent, stratified t", "none", True),
    ("batch-shared, uniform t", "batch", False),
    ("group-shared, stratified t", "group", True),
    ("batch-shared, stratified t (V-GRPO)", "batch", True),
)


@torch.no_grad()
def surrogate_draws(velocity, x0: torch.Tensor, group_size: int, num_pairs: int, draws: int,
                    sharing: str, stratified: bool, seed: int = 0) -> torch.Tensor:
    """[draws, N] per-sample surrogates of fixed samples x0 [N, *latent] under `draws` pair draws.

    velocity(z [M, *latent], t [M]) -> v [M, *latent]; sample i belongs to group i // group_size.
    """
    n = x0.shape[0]
    out = []
    for d in range(draws):
        g = torch.Generator().manual_seed(seed * 100_003 + d)
        pairs = draw_pairs(n, group_size, tuple(x0.shape[1:]), num_pairs, g, sharing=sharing, stratified=stratified)
        z = noise_latents(x0, pairs.noise, pairs.t)
        t = pairs.t.expand(n, num_pairs) if pairs.t.dim() == 1 else pairs.t
        v = velocity(z.flatten(0, 1), t.reshape(-1)).unflatten(0, (n, num_pairs)).float()
        out.append(elbo_surrogate(v, x0, pairs.noise, pairs.t).loss.mean(1))
    return torch.stack(out)


def summarize(surrogates: torch.Tensor, group_size: int) -> dict[str, float]:
    """Means over draws of surrogate_cv, and the relative estimator noise of the centred surrogate.

    surrogates: [draws, N] from `surrogate_draws`.
    """
    cvs = [surrogate_cv(s, group_size) for s in surrogates]
    grouped = surrogates.unflatten(1, (-1, group_size))  # [draws, groups, G]
    centred = (grouped - grouped.mean(2, keepdim=True)).flatten(1)  # [draws, N]
    noise = centred.std(0, unbiased=True).mean() / centred.mean(0).abs().mean().clamp(min=1e-12)
    return {
        "cv": float(torch.stack([c["cv"] for c in cvs]).mean()),
        "cv_within_group": float(torch.stack([c["cv_within_group"] for c in cvs]).mean()),
        "centred_noise_to_signal": float(noise),
    }


def markdown(rows: list[dict], setup: str) -> str:
    lines = [
        "# Surrogate variance by pair-drawing scheme", "", setup, "",
        "| scheme | surrogate CV | within-group CV | noise / signal of the group-centred surrogate |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['scheme']} | {r['cv']:.3f} | {r['cv_within_group']:.3f} | {r['centred_noise_to_signal']:.3f} |")
    return "\n".join(lines) + "\n"


@dataclass
class VarianceOptions:
    """The command line of `python -m vgrpo.experiments.variance`."""

    out: str = "runs/compare/variance"
    """Output folder."""
    prompts: int = 8
    """Training prompts in the fixed batch."""
    group_size: int = 8
    """Images per prompt."""
    pairs: int = 4
    """N_MC."""
    draws: int = 16
    """Independent pair draws per scheme."""
    steps: int = 8
    """DPM-Solver++ steps of the fixed rollout."""
    seed: int = 0
    """Seed of the rollout noise and the pair draws."""


def main(argv: list[str] | None = None) -> int:
    args = cli.parse(VarianceOptions, argv, __doc__, check=lambda o: [
        "--prompts, --pairs, --steps must be >= 1; --group_size and --draws >= 2"]
        if min(o.prompts, o.pairs, o.steps) < 1 or o.group_size < 2 or o.draws < 2 else [])

    from vgrpo.models.shapes import ShapesAdapter
    from vgrpo.sampling.rollout import rollout
    from vgrpo.tasks.shapes import eval_prompts, train_prompts_by_category

    adapter = ShapesAdapter.from_pretrained()
    prompts = eval_prompts(train_prompts_by_category(), args.prompts)[: args.prompts]  # cycling over categories
    batch = rollout(adapter, prompts, list(range(args.prompts)), iteration=0, seed=args.seed,
                    group_size=args.group_size, steps=args.steps, solver="dpm++2m", shift=1.0)

    def velocity(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return adapter.velocity(z, t, batch.cond.repeat_interleave(args.pairs))

    rows = []
    for label, sharing, stratified in SCHEMES:
        s = surrogate_draws(velocity, batch.x0, args.group_size, args.pairs, args.draws, sharing, stratified, args.seed)
        rows.append({"scheme": label, "sharing": sharing, "stratified": stratified, **summarize(s, args.group_size)})
        print(f"{label:40s} cv {rows[-1]['cv']:.3f} within-group {rows[-1]['cv_within_group']:.3f} "
              f"noise/signal {rows[-1]['centred_noise_to_signal']:.3f}")
    setup = (f"Shipped shapes base model; one fixed rollout of {args.prompts} training prompts x {args.group_size} "
             f"images ({args.steps}-step DPM-Solver++), N_MC = {args.pairs}, {args.draws} pair draws per scheme "
             f"(seed {args.seed}); values are means over draws.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "variance.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2) + "\n")
    (out / "variance.md").write_text(markdown(rows, setup))
    print(f"wrote {out / 'variance.json'} and {out / 'variance.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
