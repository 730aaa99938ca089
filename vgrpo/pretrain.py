"""Pretrain the shapes-world base model (MMDiT denoiser + text encoder) by rectified-flow matching.

Recipe (the defaults; reproducible from --seed on CPU):
  data      ground-truth renders (`vgrpo.world.render`) of train prompts, drawn on the fly: a
            category uniformly, then a prompt of it uniformly, then a random layout
  objective x0 = 2 * image - 1, eps ~ N(0, I), t ~ logit-normal(0, 1) (as SD3),
            z_t = (1 - t) x0 + t eps, loss = mean (v_theta(z_t, t, c) - (eps - x0))^2;
            the prompt is replaced by "" with probability --cfg-drop (for guidance)
  optimiser AdamW (betas 0.9/0.99, no weight decay), lr --lr with --warmup linear warm-up then
            cosine decay to 10 %, grad-norm clip 1.0, batch --batch, --steps steps; denoiser and
            text encoder trained jointly; an EMA (--ema) of both is what gets saved
  output    --out/{config.json, denoiser.safetensors, text_encoder.safetensors} (EMA weights),
            saved every --save-every steps and at the end, with the held-out verifier score of the
            final model (DPM-Solver++ 2M, 12 steps, --eval-samples images per held-out prompt)

To refresh the shipped model: python -m vgrpo.pretrain --out vgrpo/assets/shapes_base
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from vgrpo.models.shapes import ShapesAdapter, default_denoiser_config, default_text_config, parameter_counts  # noqa: E402
from vgrpo.world.prompts import heldout_prompts, train_prompts_by_category  # noqa: E402
from vgrpo.world.render import render_batch  # noqa: E402
from vgrpo.world.text import encode, tokenize  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m vgrpo.pretrain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", default="runs/shapes_base", help="output model folder")
    ap.add_argument("--steps", type=int, default=3000, help="optimiser steps")
    ap.add_argument("--batch", type=int, default=48, help="images per step")
    ap.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    ap.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    ap.add_argument("--ema", type=float, default=0.995, help="EMA decay of the saved weights")
    ap.add_argument("--cfg-drop", type=float, default=0.1, help="probability of the empty prompt")
    ap.add_argument("--seed", type=int, default=0, help="seed of weights, data and noise")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--save-every", type=int, default=250, help="save the EMA model every N steps")
    ap.add_argument("--eval-samples", type=int, default=4, help="images per held-out prompt in the final eval (0: skip)")
    args = ap.parse_args(argv)
    for name in ("steps", "batch", "threads", "save_every"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.eval_samples < 0:
        ap.error("--eval-samples must be >= 0")
    if not 0.0 <= args.cfg_drop < 1.0:
        ap.error("--cfg-drop must be in [0, 1)")
    if not 0.0 <= args.ema < 1.0:
        ap.error("--ema must be in [0, 1)")
    return args


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def draw_prompts(rng: np.random.Generator, by_category: dict[str, list[str]], n: int, cfg_drop: float) -> list[str]:
    """n training prompts: a uniform category, then a uniform prompt of it; "" with prob cfg_drop."""
    cats = list(by_category)
    out = []
    for _ in range(n):
        ps = by_category[cats[rng.integers(len(cats))]]
        out.append(ps[rng.integers(len(ps))])
    drop = rng.random(n) < cfg_drop
    return ["" if d else p for p, d in zip(out, drop)]


def heldout_eval(model: ShapesAdapter, samples_per_prompt: int, seed: int = 1234) -> dict[str, dict[str, float]]:
    """Held-out verifier mean score and accuracy per category with the model's default sampler."""
    from vgrpo.rewards.shapes import per_category_accuracy, per_category_score

    prompts = [p for p in heldout_prompts() for _ in range(samples_per_prompt)]
    images = torch.cat([model.generate(prompts[i : i + 128], seed=seed + i) for i in range(0, len(prompts), 128)])
    return {"score": per_category_score(images, prompts), "accuracy": per_category_accuracy(images, prompts)}


def ema_update(ema: torch.nn.Module, live: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), live.parameters()):
            e.lerp_(p, 1.0 - decay)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    model = ShapesAdapter.build(default_denoiser_config(), default_text_config(), seed=args.seed)
    denoiser, text = model.denoiser.train(), model.text_encoder.train().requires_grad_(True)
    ema_model = ShapesAdapter(copy.deepcopy(denoiser).eval(), copy.deepcopy(text).eval(), model.config)
    params = list(denoiser.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, args.steps, args.warmup))
    by_cat = train_prompts_by_category()
    counts = parameter_counts(model)
    print(f"denoiser {counts['denoiser']:,} params, text encoder {counts['text_encoder']:,} params")
    recipe = {k: v for k, v in vars(args).items() if k not in ("out", "threads")}

    start = time.time()
    bar = tqdm(range(args.steps), desc="pretrain", dynamic_ncols=True)
    running = None
    for step in bar:
        prompts = draw_prompts(rng, by_cat, args.batch, args.cfg_drop)
        x0 = render_batch([p or "a circle" for p in prompts], rng) * 2.0 - 1.0
        # An unconditional row still gets a real image (of a random train prompt's world).
        for i, p in enumerate(prompts):
            if not p:
                x0[i] = render_batch(draw_prompts(rng, by_cat, 1, 0.0), rng)[0] * 2.0 - 1.0
        eps = torch.randn(x0.shape, generator=gen)
        t = torch.sigmoid(torch.randn(args.batch, generator=gen)).clamp(1e-4, 1.0)
        tb = t.view(-1, 1, 1, 1)
        z = (1.0 - tb) * x0 + tb * eps
        hidden, pooled = encode(text, tokenize(model.tokenizer, prompts))
        v = denoiser(hidden_states=z, encoder_hidden_states=hidden, pooled_projections=pooled,
                     timestep=t * 1000.0, return_dict=False)[0]
        loss = (v - (eps - x0)).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        ema_update(ema_model.denoiser, denoiser, args.ema)
        ema_update(ema_model.text_encoder, text, args.ema)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        if (step + 1) % args.save_every == 0 and step + 1 < args.steps:
            ema_model._cache.clear()
            ema_model.save_pretrained(args.out, {"recipe": recipe, "trained_steps": step + 1})
    train_seconds = time.time() - start
    ema_model._cache.clear()
    extra = {"recipe": recipe, "trained_steps": args.steps, "train_seconds": round(train_seconds),
             "final_loss_ema": running}
    if args.eval_samples:
        print("evaluating the EMA model on the held-out prompts ...")
        extra["heldout_eval"] = ev = heldout_eval(ema_model, args.eval_samples)
        for kind in ("score", "accuracy"):
            print(kind, " ".join(f"{k}={v:.3f}" for k, v in ev[kind].items()))
    ema_model.save_pretrained(args.out, extra)
    print(f"saved {args.out} after {train_seconds / 60:.1f} min of training")


if __name__ == "__main__":
    main()
