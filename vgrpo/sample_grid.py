"""Sample grid PNG for a few held-out prompts: one row per prompt, the first column a ground-truth
render, then samples of the model, each captioned with its verifier score.

    python -m vgrpo.sample_grid --out grid.png                  # shipped base model
    python -m vgrpo.sample_grid --model runs/shapes_base --out grid.png --per-prompt 6
    python -m vgrpo.sample_grid --out grid.png --prompts "a red circle" "two blue squares" --steps 8
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vgrpo.utils.offline import use_offline_environment

use_offline_environment()

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from vgrpo.models.shapes import ShapesAdapter  # noqa: E402
from vgrpo.rewards.shapes import score  # noqa: E402
from vgrpo.sampling.ode import SOLVERS  # noqa: E402
from vgrpo.tasks.shapes import generate_images  # noqa: E402
from vgrpo.utils import cli  # noqa: E402
from vgrpo.utils.image_grid import image_grid  # noqa: E402
from vgrpo.world.prompts import heldout_prompts_by_category, parse  # noqa: E402
from vgrpo.world.render import render_batch  # noqa: E402


def default_prompts() -> list[str]:
    """The first held-out prompt of each category (six rows)."""
    return [ps[0] for ps in heldout_prompts_by_category().values()]


def make_grid(
    rows: list[torch.Tensor], captions: list[list[str]], labels: list[str], zoom: int = 4
) -> Image.Image:
    """rows: R tensors [N, 3, H, W] in [0, 1]; captions[r][n] under each tile; labels[r] left of row r."""
    n = max(r.shape[0] for r in rows)
    side = max(rows[0].shape[-2:]) * zoom
    flat = [c for caps in captions for c in caps]
    return image_grid(torch.cat(rows), flat, columns=n, row_labels=labels, caption_lines=1,
                      min_tile=side, max_tile=side)


@dataclass
class SampleGridOptions:
    """The options of `python -m vgrpo.sample_grid`."""

    out: str
    """Output PNG path."""
    model: str | None = None
    """Model folder or hub id, e.g. a `vgrpo.export --format merged` of a run (`--model.path` works too); None = the shipped base model."""
    prompts: list[str] = field(default_factory=list)
    """Prompts, several words or comma-separated; empty = one held-out prompt per category."""
    per_prompt: int = 6
    """Samples per prompt."""
    solver: str | None = None
    """ODE solver (vgrpo.sampling.ode.SOLVERS); None = the model's."""
    steps: int | None = None
    """Solver steps; None = the model's."""
    guidance: float | None = None
    """CFG scale; None = the model's."""
    seed: int = 0
    """Seed of the noise and of the ground-truth renders."""
    zoom: int = 4
    """Nearest-neighbour upscaling of each tile."""


def problems(o: SampleGridOptions) -> list[str]:
    """What is wrong with the options (checked before any model is loaded)."""
    found = [] if o.per_prompt >= 1 else ["--per_prompt must be >= 1"]
    if o.solver is not None and o.solver not in SOLVERS:
        found.append(f"--solver must be one of {'|'.join(SOLVERS)}, got {o.solver!r}")
    return found


def main(argv: list[str] | None = None) -> None:
    args = cli.parse(SampleGridOptions, argv, __doc__, check=problems, aliases={"model.path": "model"})
    torch.set_num_threads(2)
    prompts = args.prompts or default_prompts()
    for p in prompts:
        parse(p)  # fail early, naming the word that is outside the grammar
    model = ShapesAdapter.from_pretrained(args.model)
    flat = [p for p in prompts for _ in range(args.per_prompt)]
    images = generate_images(model, flat, seed=args.seed, solver=args.solver, steps=args.steps, guidance=args.guidance)
    scores = score(images, flat)
    truth = render_batch(prompts, args.seed)
    rows, caps = [], []
    for i, p in enumerate(prompts):
        sl = slice(i * args.per_prompt, (i + 1) * args.per_prompt)
        rows.append(torch.cat([truth[i : i + 1], images[sl]]))
        caps.append(["truth"] + [f"{s:.2f}" for s in scores[sl].tolist()])
    grid = make_grid(rows, caps, prompts, args.zoom)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    grid.save(args.out)
    print(f"wrote {args.out}: {len(prompts)} prompts x {args.per_prompt} samples, mean score {scores.mean():.3f}")


if __name__ == "__main__":
    main()
