"""The supervised control for the trainer's held-out target: continue pretraining a shapes model on
ground-truth renders for a fixed number of steps and score it with the trainer's held-out evaluation.

    python -m vgrpo.experiments.supervised [--model DIR] [--steps 2000] [--evals 4] [--lr 1e-4]
        [--images-per-category 128] [--out runs/supervised]

It answers "what would the same compute buy with perfect data and the loss the model was built
on?". The data, loss, batch and EMA are pretraining's (`vgrpo.pretrain`); the learning rate is held
constant (default: the pretraining recipe's final 1e-4) and the optimizer starts fresh. Denoiser
and text encoder are both trained; the EMA is what gets scored, with the trainer's evaluation
(`eval.images_per_category` images per category, 8-step DPM-Solver++, fixed noise), so the scores
compare directly with an RL run's. 2000 steps of batch 48 are about the compute of the default RL
run on a 2-core CPU. Writes supervised.json (one row per evaluation) and prints each row.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vgrpo.models.shapes import ShapesAdapter
from vgrpo.pretrain import Pretraining, ema_copy, recipe_optimizer, train_step
from vgrpo.pretrain import parse_args as pretrain_args
from vgrpo.tasks.shapes import ShapesEvaluator
from vgrpo.utils.distributed import World
from vgrpo.trainer.evaluation import evaluate
from vgrpo.world.prompts import train_prompts_by_category


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m vgrpo.experiments.supervised", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="shapes model folder (default: the shipped base model)")
    ap.add_argument("--steps", type=int, default=2000, help="supervised optimizer steps")
    ap.add_argument("--evals", type=int, default=4, help="evaluations spread evenly over the steps (plus one before)")
    ap.add_argument("--lr", type=float, default=1e-4, help="constant AdamW learning rate")
    ap.add_argument("--batch", type=int, default=48, help="renders per step")
    ap.add_argument("--images-per-category", type=int, default=128, help="held-out images per category per evaluation")
    ap.add_argument("--seed", type=int, default=7, help="seed of the data and noise (the evaluation noise is fixed)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", default="runs/supervised", help="folder for supervised.json")
    args = ap.parse_args(argv)
    for name in ("steps", "evals", "batch", "images_per_category", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.evals > args.steps:
        ap.error(f"--evals ({args.evals}) must be <= --steps ({args.steps})")
    if not args.lr > 0:
        ap.error("--lr must be > 0")
    return args


def continuation(model: ShapesAdapter, lr: float, seed: int) -> Pretraining:
    """Pretraining state that continues `model`: the live copy trains, a deep copy is its EMA."""
    ema = ema_copy(model)
    model.denoiser.train().requires_grad_(True)
    model.text_encoder.train().requires_grad_(True)
    opt = recipe_optimizer(model, lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return Pretraining(model, ema, opt, sched, np.random.default_rng(seed), torch.Generator().manual_seed(seed))


def score(model: ShapesAdapter, evaluator: ShapesEvaluator) -> dict[str, float]:
    """The trainer's held-out metrics ("score/<category>", "accuracy/<category>", "*/overall")."""
    model.forget_prompt_encodings()  # the text encoder changed since the last evaluation
    metrics, _ = evaluate(model, evaluator, World(0, 1, torch.device("cpu")), seed=0, steps=8,
                          solver="dpm++2m", shift=1.0)
    return metrics


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    run = continuation(ShapesAdapter.from_pretrained(args.model), args.lr, args.seed)
    defaults = pretrain_args([])  # pretraining's data and EMA settings
    recipe = argparse.Namespace(batch=args.batch, cfg_drop=defaults.cfg_drop, captions="clean",
                                t_mean=run.model.config.get("recipe", {}).get("t_mean", defaults.t_mean),
                                ema=defaults.ema)
    evaluator = ShapesEvaluator(args.images_per_category)
    by_category = train_prompts_by_category()
    marks = {args.steps * (i + 1) // args.evals for i in range(args.evals)}
    rows, seconds, loss = [], 0.0, None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for step in range(args.steps + 1):
        if step == 0 or step in marks:
            rows.append({"step": step, "train_seconds": round(seconds, 1), "loss": loss, **score(run.ema, evaluator)})
            trained = "" if loss is None else f" (train {seconds:.0f} s, last loss {loss:.4f})"
            print(f"step {step}: held-out score {rows[-1]['score/overall']:.3f}{trained}", flush=True)
            (out / "supervised.json").write_text(json.dumps(rows, indent=1))
        if step < args.steps:
            started = time.perf_counter()
            loss = train_step(run, recipe, by_category)
            seconds += time.perf_counter() - started
    return rows


if __name__ == "__main__":
    main()
