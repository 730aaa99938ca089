"""Pretrain the shapes-world base model (MMDiT denoiser + text encoder) by rectified-flow matching.

Recipe (the defaults; reproducible from --seed on CPU):
  data      ground-truth renders (`vgrpo.world.render`) of train prompts, drawn on the fly: a
            category uniformly, then a prompt of it uniformly, then a random layout
  objective x0 = 2 * image - 1, eps ~ N(0, I), t ~ logit-normal(--t-mean, 1) (SD3 uses 0),
            z_t = (1 - t) x0 + t eps, loss = mean (v_theta(z_t, t, c) - (eps - x0))^2 in velocity
            space for both parametrisations (--prediction): "v" outputs the velocity, "x" outputs
            the clean image x_theta and v_theta = (z_t - x_theta) / t, the loss weight 1 / t^2
            capped at t = 0.05 (as JiT, "Back to Basics: Let Denoising Generative Models Denoise");
            the prompt is replaced by "" with probability --cfg-drop (for guidance)
  optimiser AdamW (betas 0.9/0.99, no weight decay), lr --lr with --warmup linear warm-up then
            cosine decay to 10 %, grad-norm clip 1.0, batch --batch, --steps steps; denoiser and
            text encoder trained jointly; an EMA (--ema) of both is what gets saved
  output    --out/{config.json, denoiser.safetensors, text_encoder.safetensors} (EMA weights),
            saved every --save-every steps and at the end, with the held-out verifier score of the
            final model (DPM-Solver++ 2M, 12 steps, --eval-samples held-out images per category)
  resume    every save also writes --out/pretrain_state.pt (live and EMA weights, optimiser,
            schedule, data and noise generators, step), atomically; re-running the same command
            after a kill continues from it bit for bit (same --threads), and a different recipe is
            refused; the file is removed once the final model is saved
  captions  --captions web pairs each render with a web-like caption (`vgrpo.world.captions`:
            color, count, relation and object mentions dropped or swapped with stated
            probabilities, --web-noise NAME=P to change one) instead of its prompt; with --init
            it fine-tunes an existing model, e.g. the shipped one into a base that can draw every
            prompt but follows prompts loosely:
            python -m vgrpo.pretrain --init vgrpo/assets/shapes_base --captions web --steps 600 \
                --lr 3e-4 --warmup 20 --threads 1 --out runs/shapes_web   (the shipped default base)

A clean model from scratch: python -m vgrpo.pretrain --out runs/shapes_base (the shipped one
continues an earlier clean model; docs/world.md has its recipe)
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vgrpo.utils.offline import use_offline_environment

use_offline_environment()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from vgrpo.models.shapes import (  # noqa: E402
    IMAGE_SIZE,
    PREDICTIONS,
    ShapesAdapter,
    default_denoiser_config,
    default_text_config,
    parameter_counts,
)
from vgrpo.trainer.lr_schedule import lr_multiplier  # noqa: E402
from vgrpo.utils import cli  # noqa: E402
from vgrpo.utils.atomic import write_atomically  # noqa: E402
from vgrpo.world.captions import CaptionNoise, web_caption  # noqa: E402
from vgrpo.world.prompts import heldout_prompts_by_category, train_prompts_by_category  # noqa: E402
from vgrpo.world.render import render_batch  # noqa: E402
from vgrpo.world.text import encode, tokenize  # noqa: E402


@dataclass
class PretrainOptions:
    """The options of `python -m vgrpo.pretrain` (the recipe above)."""

    out: str = "runs/shapes_base"
    """Output model folder."""
    steps: int = 10000
    """Optimiser steps."""
    batch: int = 48
    """Images per step."""
    lr: float = 1e-3
    """Peak learning rate."""
    warmup: int = 100
    """Linear warm-up steps."""
    ema: float = 0.995
    """EMA decay of the saved weights, in [0, 1)."""
    patch_size: Literal[1, 2, 4, 8] = 4
    """Denoiser patch side in pixels."""
    layers: int = 4
    """Denoiser transformer blocks."""
    heads: int = 3
    """Denoiser attention heads of width 32 (model width = 32 x heads)."""
    prediction: str = "x"
    """What the denoiser outputs: the clean image (x) or the velocity (v)."""
    t_mean: float = 0.5
    """Location of the logit-normal timestep density (> 0: noisier)."""
    cfg_drop: float = 0.1
    """Probability of the empty prompt, in [0, 1)."""
    captions: Literal["clean", "web"] = "clean"
    """Text paired with each render: its prompt (clean) or a web-like corruption of it (web: vgrpo.world.captions)."""
    web_noise: list[str] = field(default_factory=list)
    """Probabilities of the web captions other than vgrpo.world.captions.CaptionNoise's defaults, as NAME=P (e.g. color_swap=0.6); only with --captions web."""
    freeze_text_encoder: bool = False
    """Keep the text encoder as it is (only with --init): the denoiser alone learns, as real
    text-to-image models train against a frozen pretrained text encoder."""
    init: str | None = None
    """Start from this shapes model folder (fine-tuning; the architecture and prediction options are then the folder's) instead of random weights."""
    seed: int = 0
    """Seed of weights, data and noise."""
    threads: int = 2
    """Torch CPU threads."""
    save_every: int = 500
    """Save the EMA model every N steps."""
    resume: Literal["auto", "never"] = "auto"
    """auto: continue from <out>/pretrain_state.pt when it exists; never: start over."""
    eval_samples: int = 64
    """Held-out images per category in the final eval (0: skip)."""


def problems(o: PretrainOptions) -> list[str]:
    """What is wrong with the options (checked before anything is built)."""
    found = [f"--{name} must be >= 1" for name in ("steps", "batch", "threads", "save_every", "layers", "heads")
             if getattr(o, name) < 1]
    if o.prediction not in PREDICTIONS:
        found.append(f"--prediction must be one of {'|'.join(PREDICTIONS)}, got {o.prediction!r}")
    if o.eval_samples < 0:
        found.append("--eval_samples must be >= 0")
    if not 0.0 <= o.cfg_drop < 1.0:
        found.append("--cfg_drop must be in [0, 1)")
    if not 0.0 <= o.ema < 1.0:
        found.append("--ema must be in [0, 1)")
    if o.freeze_text_encoder and o.init is None:
        found.append("--freeze_text_encoder needs --init (a random text encoder would stay random)")
    if o.web_noise and o.captions != "web":
        found.append("--web_noise needs --captions web")
    try:
        caption_noise(o)
    except ValueError as e:
        found.append(str(e))
    return found


def caption_noise(o: PretrainOptions) -> CaptionNoise:
    """The web-caption probabilities of `--web_noise NAME=P ...` (the rest at their defaults)."""
    names = [f.name for f in dataclasses.fields(CaptionNoise)]
    values = {}
    for item in o.web_noise:
        name, _, p = item.partition("=")
        try:
            value = float(p)
        except ValueError:
            value = None
        if name not in names or value is None:
            raise ValueError(f"--web_noise {item!r}: expected NAME=P with NAME one of {'|'.join(names)}")
        values[name] = value
    return CaptionNoise(**values)


def parse_args(argv: list[str] | None = None) -> PretrainOptions:
    """The checked options of `argv` (exits 2 naming a bad one; 0 after --help / --print-config)."""
    return cli.parse(PretrainOptions, argv, __doc__, check=problems)


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 at step `steps` (the trainer's cosine schedule
    over steps + 1 steps)."""
    return lr_multiplier(step, total_steps=steps + 1, warmup_steps=warmup, schedule="cosine", final_ratio=0.1)


def draw_prompts(rng: np.random.Generator, by_category: dict[str, list[str]], n: int, cfg_drop: float) -> list[str]:
    """n training prompts: a uniform category, then a uniform prompt of it; "" with prob cfg_drop."""
    cats = list(by_category)
    out = []
    for _ in range(n):
        ps = by_category[cats[rng.integers(len(cats))]]
        out.append(ps[rng.integers(len(ps))])
    drop = rng.random(n) < cfg_drop
    return ["" if d else p for p, d in zip(out, drop)]


def heldout_eval(model: ShapesAdapter, images_per_category: int, seed: int = 1234) -> dict[str, dict[str, float]]:
    """Held-out verifier mean score and accuracy per category with the model's default sampler.

    `images_per_category` images per category, cycling over its held-out prompts (the trainer's
    held-out evaluation does the same), so every category weighs equally in "overall".
    """
    from vgrpo.rewards.shapes import category_report
    from vgrpo.tasks.shapes import eval_prompts, generate_images

    prompts = eval_prompts(heldout_prompts_by_category(), images_per_category)
    images = torch.cat([generate_images(model, prompts[i : i + 128], seed=seed + i)
                        for i in range(0, len(prompts), 128)])
    report = category_report(images, prompts)
    return {"score": report["score"], "accuracy": report["accuracy"]}


X_LOSS_MIN_T = 0.05


def flow_matching_loss(
    out: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, prediction: str
) -> torch.Tensor:
    """Velocity-space flow-matching loss of a denoiser output; out, x0, eps [B, C, H, W], t [B].

    "v": mean (out - (eps - x0))^2. "x": the same loss with v_theta = (z_t - out) / t, i.e.
    mean ((out - x0) / max(t, X_LOSS_MIN_T))^2 (the cap keeps the weight of nearly clean inputs finite).
    """
    if prediction == "v":
        return (out - (eps - x0)).square().mean()
    scale = t.clamp_min(X_LOSS_MIN_T).view(-1, *([1] * (x0.dim() - 1)))
    return ((out - x0) / scale).square().mean()


def ema_update(ema: torch.nn.Module, live: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), live.parameters()):
            e.lerp_(p, 1.0 - decay)


STATE_FILE = "pretrain_state.pt"
NOT_RECIPE = ("out", "threads", "resume", "save_every", "eval_samples")  # do not change the weights


@dataclass
class Pretraining:
    """Everything a run needs to continue: modules, optimiser, schedule, generators, progress."""

    model: ShapesAdapter
    ema: ShapesAdapter
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    rng: np.random.Generator
    gen: torch.Generator
    step: int = 0
    running: float | None = None
    seconds: float = 0.0

    def state_dict(self, recipe: dict) -> dict:
        return {
            "recipe": recipe, "step": self.step, "running": self.running, "seconds": self.seconds,
            "denoiser": self.model.denoiser.state_dict(), "text_encoder": self.model.text_encoder.state_dict(),
            "ema_denoiser": self.ema.denoiser.state_dict(), "ema_text_encoder": self.ema.text_encoder.state_dict(),
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "numpy_rng": self.rng.bit_generator.state, "torch_gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.denoiser.load_state_dict(state["denoiser"])
        self.model.text_encoder.load_state_dict(state["text_encoder"])
        self.ema.denoiser.load_state_dict(state["ema_denoiser"])
        self.ema.text_encoder.load_state_dict(state["ema_text_encoder"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.gen.set_state(state["torch_gen"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.running, self.seconds = state["step"], state["running"], state["seconds"]


def ema_copy(model: ShapesAdapter) -> ShapesAdapter:
    """A frozen deep copy of `model` (denoiser and text encoder in eval mode) to hold its EMA."""
    return ShapesAdapter(copy.deepcopy(model.denoiser).eval(), copy.deepcopy(model.text_encoder).eval(), model.config)


def recipe_optimizer(model: ShapesAdapter, lr: float) -> torch.optim.Optimizer:
    """The recipe's AdamW (betas 0.9 / 0.99, no weight decay) over the denoiser and, unless frozen,
    the text encoder."""
    params = [p for part in (model.denoiser, model.text_encoder) for p in part.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.0)


def build(args: PretrainOptions) -> Pretraining:
    """Fresh model, EMA copy, optimiser and schedule of the recipe in `args` (seeded)."""
    torch.manual_seed(args.seed)
    if args.init is not None:
        model = ShapesAdapter.from_pretrained(args.init)
    else:
        architecture = default_denoiser_config(
            patch_size=args.patch_size,
            pos_embed_max_size=IMAGE_SIZE // args.patch_size,
            num_layers=args.layers,
            num_attention_heads=args.heads,
            caption_projection_dim=32 * args.heads,
        )
        model = ShapesAdapter.build(architecture, default_text_config(), args.seed, args.prediction)
    model.denoiser.train()
    if args.freeze_text_encoder:
        model.text_encoder.eval().requires_grad_(False)
    else:
        model.text_encoder.train().requires_grad_(True)
    ema = ema_copy(model)
    opt = recipe_optimizer(model, args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, args.steps, args.warmup))
    return Pretraining(model, ema, opt, sched, np.random.default_rng(args.seed), torch.Generator().manual_seed(args.seed))


def resume_if_possible(run: Pretraining, args: PretrainOptions, recipe: dict) -> None:
    """Load --out/pretrain_state.pt into `run` (resume=auto); refuse a state of another recipe."""
    path = Path(args.out) / STATE_FILE
    if args.resume == "never" or not path.is_file():
        return
    state = torch.load(path, map_location="cpu", weights_only=True)
    differ = sorted(k for k in set(recipe) | set(state["recipe"]) if recipe.get(k) != state["recipe"].get(k))
    if differ:
        detail = ", ".join(f"{k}: saved {state['recipe'].get(k)!r} vs now {recipe.get(k)!r}" for k in differ)
        raise SystemExit(f"error: {path} belongs to another recipe ({detail}); "
                         "use the same arguments, another --out, or --resume=never")
    run.load_state_dict(state)
    print(f"resuming from {path} at step {run.step}")


def save(run: Pretraining, args: PretrainOptions, recipe: dict) -> None:
    """The EMA model (atomically per file) and the resumable state (atomically) at run.step."""
    run.ema.forget_prompt_encodings()
    run.ema.save_pretrained(args.out, {"recipe": recipe, "trained_steps": run.step})
    state = run.state_dict(recipe)
    write_atomically(Path(args.out) / STATE_FILE, lambda tmp: torch.save(state, tmp))


def train_step(run: Pretraining, args: PretrainOptions, by_cat: dict[str, list[str]], noise: CaptionNoise) -> float:
    """One optimiser step on a fresh batch of renders; returns the loss."""
    denoiser, text = run.model.denoiser, run.model.text_encoder
    prompts = draw_prompts(run.rng, by_cat, args.batch, args.cfg_drop)
    x0 = render_batch([p or "a circle" for p in prompts], run.rng) * 2.0 - 1.0
    # An unconditional row still gets a real image (of a random train prompt's world).
    for i, p in enumerate(prompts):
        if not p:
            x0[i] = render_batch(draw_prompts(run.rng, by_cat, 1, 0.0), run.rng)[0] * 2.0 - 1.0
    eps = torch.randn(x0.shape, generator=run.gen)
    t = torch.sigmoid(torch.randn(args.batch, generator=run.gen) + args.t_mean).clamp(1e-4, 1.0)
    tb = t.view(-1, 1, 1, 1)
    z = (1.0 - tb) * x0 + tb * eps
    if args.captions == "web":
        prompts = [web_caption(p, run.rng, noise) for p in prompts]
    hidden, pooled = encode(text, tokenize(run.model.tokenizer, prompts))
    out = denoiser(hidden_states=z, encoder_hidden_states=hidden, pooled_projections=pooled,
                   timestep=t * 1000.0, return_dict=False)[0]
    loss = flow_matching_loss(out, x0, eps, t, run.model.prediction)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([q for g in run.opt.param_groups for q in g["params"]], 1.0)
    run.opt.step()
    run.sched.step()
    ema_update(run.ema.denoiser, denoiser, args.ema)
    if not args.freeze_text_encoder:  # a frozen encoder's EMA is the encoder itself, bit for bit
        ema_update(run.ema.text_encoder, text, args.ema)
    return loss.item()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = {k: v for k, v in dataclasses.asdict(args).items() if k not in NOT_RECIPE}
    run = build(args)
    resume_if_possible(run, args, recipe)
    by_cat = train_prompts_by_category()
    noise = caption_noise(args)
    counts = parameter_counts(run.model)
    print(f"denoiser {counts['denoiser']:,} params, text encoder {counts['text_encoder']:,} params")

    start = time.time() - run.seconds
    bar = tqdm(range(run.step, args.steps), initial=run.step, total=args.steps, desc="pretrain", dynamic_ncols=True)
    for _ in bar:
        loss = train_step(run, args, by_cat, noise)
        run.step += 1
        run.running = loss if run.running is None else 0.98 * run.running + 0.02 * loss
        run.seconds = time.time() - start
        bar.set_postfix(loss=f"{run.running:.4f}", lr=f"{run.sched.get_last_lr()[0]:.2e}")
        if run.step % args.save_every == 0 and run.step < args.steps:
            save(run, args, recipe)
    run.ema.forget_prompt_encodings()
    extra = {"recipe": recipe, "trained_steps": args.steps, "train_seconds": round(run.seconds),
             "final_loss_ema": run.running}
    run.ema.config.pop("heldout_eval", None)  # an --init model's evaluation does not describe this one
    if args.eval_samples:
        print("evaluating the EMA model on the held-out prompts ...")
        extra["heldout_eval"] = ev = heldout_eval(run.ema, args.eval_samples)
        for kind in ("score", "accuracy"):
            print(kind, " ".join(f"{k}={v:.3f}" for k, v in ev[kind].items()))
    run.ema.save_pretrained(args.out, extra)
    (Path(args.out) / STATE_FILE).unlink(missing_ok=True)
    print(f"saved {args.out} after {run.seconds / 60:.1f} min of training")


if __name__ == "__main__":
    main()
