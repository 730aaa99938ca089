"""How much room does a base model leave RL? Held-out mean score and best-of-K of shapes models.

    python -m vgrpo.experiments.headroom [--models DIR ...] [--images-per-category 32]
        [--samples 8] [--out runs/headroom]

For each model, every held-out evaluation slot (`--images-per-category` per category, cycling
over the category's held-out prompts, as the trainer's evaluation) is sampled `--samples` times
with fixed noise (the same for every model; 8-step DPM-Solver++ as the trainer's rollouts and
evaluation) and scored by the verifier. Per category and overall (the mean of the categories):
the mean score over all images, best-of-K (the mean over slots of the best of the K samples),
and the accuracy (fully satisfied). Mean far below best-of-K is headroom a reward can pull the
model into without teaching it anything it cannot already draw. Writes headroom.json, prints a
markdown table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from vgrpo.utils.offline import use_offline_environment

use_offline_environment()

import torch  # noqa: E402

from vgrpo.utils import cli  # noqa: E402

METRICS = ("mean", "best_of_k", "accuracy")


def per_category(scores: torch.Tensor, satisfied: torch.Tensor, categories: list[str]) -> dict[str, dict[str, float]]:
    """scores, satisfied: [K, N] over K samples of N slots; categories: [N] -> metric -> category -> value."""
    out: dict[str, dict[str, float]] = {m: {} for m in METRICS}
    for cat in dict.fromkeys(categories):
        idx = torch.tensor([i for i, c in enumerate(categories) if c == cat])
        out["mean"][cat] = float(scores[:, idx].mean())
        out["best_of_k"][cat] = float(scores[:, idx].amax(0).mean())
        out["accuracy"][cat] = float(satisfied[:, idx].float().mean())
    for m in METRICS:
        out[m]["overall"] = sum(out[m].values()) / len(out[m])
    return out


def measure(model_dir: str | None, images_per_category: int, samples: int, steps: int) -> dict[str, dict[str, float]]:
    from vgrpo.models.shapes import ShapesAdapter
    from vgrpo.rewards.shapes import verdicts
    from vgrpo.tasks.shapes import eval_prompts, generate_images
    from vgrpo.world.prompts import category, heldout_prompts_by_category

    model = ShapesAdapter.from_pretrained(model_dir)
    prompts = eval_prompts(heldout_prompts_by_category(), images_per_category)
    scores, satisfied = [], []
    for k in range(samples):
        images = torch.cat([
            generate_images(model, prompts[i : i + 128], seed=10_000 * (k + 1) + i, steps=steps,
                            solver="dpm++2m", shift=1.0, guidance=1.0)
            for i in range(0, len(prompts), 128)
        ])
        v = verdicts(images, prompts)
        scores.append(torch.tensor([x.score for x in v]))
        satisfied.append(torch.tensor([x.satisfied for x in v]))
    return per_category(torch.stack(scores), torch.stack(satisfied), [category(p) for p in prompts])


@dataclass
class HeadroomOptions:
    """The command line of `python -m vgrpo.experiments.headroom`."""

    models: list[str] = field(default_factory=list)
    """Shapes model folders (none = the shipped default base)."""
    images_per_category: int = 32
    """Held-out slots per category."""
    samples: int = 8
    """Samples per slot (the K of best-of-K)."""
    steps: int = 8
    """DPM-Solver++ steps."""
    threads: int = 2
    """Torch CPU threads."""
    out: str = "runs/headroom"
    """Output folder."""


def main(argv: list[str] | None = None) -> dict:
    args = cli.parse(HeadroomOptions, argv, __doc__, check=lambda o: [
        "--images_per_category, --samples, --steps and --threads must be >= 1"]
        if min(o.images_per_category, o.samples, o.steps, o.threads) < 1 else [])
    torch.set_num_threads(args.threads)
    results = {}
    for m in args.models or [None]:
        name = m or "shipped"
        results[name] = measure(m, args.images_per_category, args.samples, args.steps)
        r = results[name]
        print(f"{name}: mean {r['mean']['overall']:.3f} best-of-{args.samples} {r['best_of_k']['overall']:.3f} "
              f"accuracy {r['accuracy']['overall']:.3f}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "headroom.json").write_text(json.dumps({"setup": cli.to_dict(args), "results": results}, indent=1) + "\n")
    cats = list(next(iter(results.values()))["mean"])
    print("| model | metric | " + " | ".join(cats) + " |\n|---|---|" + "---|" * len(cats))
    for name, r in results.items():
        for metric in METRICS:
            print(f"| {name} | {metric} | " + " | ".join(f"{r[metric][c]:.3f}" for c in cats) + " |")
    return results


if __name__ == "__main__":
    main()
