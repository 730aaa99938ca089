"""Score a model, or a checkpoint of a run, on a prompt set with any rewards; write JSON + Markdown.

    python -m vgrpo.evaluate                                        # shipped base model, held-out prompts
    python -m vgrpo.evaluate --run runs/shapes-cpu                  # latest checkpoint of a run
    python -m vgrpo.evaluate --run runs/shapes-cpu --checkpoint step-000050 \\
        --rewards shapes,jpeg_compressibility --prompts heldout --images-per-prompt 8
    python -m vgrpo.evaluate --preset sd35m-stage1 --model.path /models/sd35m \\
        --prompts prompts.txt --rewards pickscore,clipscore --reward-paths /models/PickScore_v1,openai/clip-vit-large-patch14

Writes `<out>/eval.json` (per-reward mean, std and count; per-category verifier score and accuracy
when the prompts are in the shapes grammar) and `<out>/eval.md` (the same as tables), the way the
paper's tables are made. Images use fixed noise per (prompt, image) so two models compare on the
same draws.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from vgrpo.utils.offline import use_offline_environment
from vgrpo.utils.prompt_file import read_prompt_records

STREAM_EVALUATE = 7


def load_prompts(spec: str) -> list[str]:
    """'heldout' | 'train' (the built-in world's split) or a prompt file (text, or JSONL with metadata)."""
    return load_prompts_and_metadata(spec)[0]


def load_prompts_and_metadata(spec: str) -> tuple[list[str], list[dict] | None]:
    """The prompts of `spec` (see `load_prompts`) and, for a JSONL file with metadata, one dict each."""
    if spec in ("heldout", "train"):
        from vgrpo.world.prompts import heldout_prompts, train_prompts

        return (heldout_prompts() if spec == "heldout" else train_prompts()), None
    if not Path(spec).is_file():
        raise FileNotFoundError(f"--prompts {spec!r} is neither 'heldout', 'train' nor an existing file")
    records = read_prompt_records(spec)
    return [r.prompt for r in records], ([r.metadata for r in records] if any(r.metadata for r in records) else None)


def load_run_config(run: str | None, preset: str | None, overrides: Sequence[str], config_file: str | None = None):
    """The run's saved config, or a preset's (default shapes-cpu, or the one `config_file` names),
    then `config_file`'s values, then the `section.key=value` overrides (the order of vgrpo.train)."""
    from vgrpo.trainer.cli import Command, apply_values, read_config_file
    from vgrpo.trainer.config import Config, apply_overrides

    if run is None:
        return Command(preset=preset, config_file=config_file, overrides=list(overrides)).config()
    saved = Path(run) / "config.json"
    if not saved.is_file():
        raise FileNotFoundError(f"--run {run}: no config.json (not a vgrpo run folder)")
    cfg = Config.from_dict(json.loads(saved.read_text()))
    if config_file:
        values = read_config_file(config_file)
        values.pop("preset", None)
        apply_values(cfg, values, where=config_file)
    return apply_overrides(cfg, list(overrides))


def find_checkpoint(run: str, name: str | None) -> Path | None:
    """The named checkpoint of a run, or its newest one that passes its manifest check (None if it
    has none); newer ones that fail are skipped with a warning naming them."""
    from vgrpo.trainer.checkpoint import problem

    folder = Path(run) / "checkpoints"
    if name is not None:
        path = folder / name
        why = problem(path)
        if why is not None:
            raise FileNotFoundError(f"{path} is not a complete checkpoint ({why})")
        return path
    for path in sorted(folder.glob("step-*"), reverse=True) if folder.is_dir() else []:
        why = problem(path)
        if why is None:
            return path
        print(f"warning: skipping checkpoint {path}: {why}", file=sys.stderr)
    return None


def load_trainable_weights(denoiser: torch.nn.Module, checkpoint: Path) -> None:
    """Load the checkpoint's trainable parameters (LoRA adapters or all) into `denoiser`."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        set_model_state_dict,
    )

    options = StateDictOptions(ignore_frozen_params=True)
    state = {"model": get_model_state_dict(denoiser, options=options)}
    dcp.load(state, checkpoint_id=str(checkpoint))
    set_model_state_dict(
        denoiser, state["model"], options=StateDictOptions(ignore_frozen_params=True, strict=False)
    )
    if not all(bool(torch.isfinite(p).all()) for p in denoiser.parameters() if p.requires_grad):
        raise ValueError(f"checkpoint {checkpoint} holds non-finite parameters")


def summarise(scores: torch.Tensor, valid: torch.Tensor, names: list[str]) -> dict[str, dict[str, float]]:
    """Per reward: mean, std and count over the valid samples."""
    out = {}
    for j, name in enumerate(names):
        col = scores[valid, j].double()
        out[name] = {
            "mean": float(col.mean()) if col.numel() else float("nan"),
            "std": float(col.std(unbiased=False)) if col.numel() else float("nan"),
            "count": int(col.numel()),
        }
    return out


def markdown(result: dict) -> str:
    """The result as Markdown tables."""
    lines = [f"# Evaluation: {result['model']}", "", f"{result['num_prompts']} prompts x "
             f"{result['images_per_prompt']} images, {result['solver']} {result['steps']} steps", "",
             "| reward | mean | std | n |", "|---|---|---|---|"]
    for name, s in result["rewards"].items():
        lines.append(f"| {name} | {s['mean']:.4f} | {s['std']:.4f} | {s['count']} |")
    if "categories" in result:
        from vgrpo.rewards.shapes import REQUIREMENTS

        lines += ["", "| category | verifier score | accuracy | " + " | ".join(REQUIREMENTS) + " |",
                  "|---|---|---|" + "---|" * len(REQUIREMENTS)]
        for cat, s in result["categories"].items():
            need = s.get("requirements", {})
            cells = " | ".join(f"{need[r]:.3f}" if r in need else "-" for r in REQUIREMENTS)
            lines.append(f"| {cat} | {s['score']:.3f} | {s['accuracy']:.3f} | {cells} |")
    return "\n".join(lines) + "\n"


def evaluate_model(adapter, prompts: list[str], rewards, *, images_per_prompt: int, seed: int,
                   steps: int, solver: str, shift: float, cfg_scale: float, batch_size: int,
                   metadata: list[dict] | None = None):
    """Generate images_per_prompt images per prompt and score them (with the prompts' metadata, one
    dict per prompt, when given): (images [B, 3, H, W], sample prompts, RewardScores)."""
    from vgrpo.sampling.rollout import generate, initial_noise, sample_indices

    index = sample_indices(range(len(prompts)), images_per_prompt)
    noise = initial_noise(adapter.latent_shape, seed, STREAM_EVALUATE, 0, index)
    cond = adapter.encode_prompts(prompts).repeat_interleave(images_per_prompt)
    x0 = generate(adapter, cond, noise, steps=steps, solver=solver, shift=shift, cfg_scale=cfg_scale,
                  batch_size=batch_size)
    images = torch.cat([adapter.decode(x0[i : i + batch_size]) for i in range(0, x0.shape[0], batch_size)])
    sample_prompts = [p for p in prompts for _ in range(images_per_prompt)]
    sample_metadata = None if metadata is None else [m for m in metadata for _ in range(images_per_prompt)]
    return images, sample_prompts, rewards(images.float().cpu(), sample_prompts, metadata=sample_metadata)


@dataclass
class EvaluateOptions:
    """The options of `python -m vgrpo.evaluate` besides the config's (--preset, --config, --section.key)."""

    run: str | None = None
    """Run folder (its config.json and checkpoints); None = the config of --preset / --config."""
    checkpoint: str | None = None
    """Checkpoint folder name inside <run>/checkpoints; None = the newest that passes its check."""
    prompts: str = "heldout"
    """'heldout', 'train' or a prompt file (one per line, or *.jsonl with metadata)."""
    rewards: list[str] = field(default_factory=lambda: ["shapes"])
    """Reward names (vgrpo.rewards.registry)."""
    reward_paths: list[str] = field(default_factory=list)
    """Per reward, its weights folder, hub id or endpoint URL ("none" for none); empty = none for all."""
    images_per_prompt: int = 4
    """Images per prompt, each with its own fixed noise."""
    seed: int = 0
    """Seed of the fixed noise."""
    batch_size: int = 64
    """Images generated per batch."""
    out: str | None = None
    """Output folder; None = <run>/evaluate, or runs/evaluate without --run."""


def problems(o: EvaluateOptions) -> list[str]:
    """What is wrong with the options (checked before any model is loaded)."""
    from vgrpo.utils import hub

    found = [] if o.images_per_prompt >= 1 else ["--images_per_prompt must be >= 1"]
    if o.reward_paths and len(o.reward_paths) != len(o.rewards):
        found.append(f"--reward_paths has {len(o.reward_paths)} entries for {len(o.rewards)} rewards")
    return found + [m for i, p in enumerate(o.reward_paths) if (m := hub.problem(p, f"--reward_paths[{i}]"))]


def parse_command_line(argv: Sequence[str] | None) -> tuple[EvaluateOptions, object, bool]:
    """(the options, the resolved Config, --print-config given); exits 0 after --help, 2 on a bad input."""
    from vgrpo.trainer.cli import help_text, parse_command
    from vgrpo.trainer.config import ConfigError
    from vgrpo.utils.cli import key_lines, set_key

    try:
        command = parse_command(sys.argv[1:] if argv is None else list(argv), extra_roots=(EvaluateOptions,))
        if command.help:
            print(help_text(__doc__, ["options of vgrpo.evaluate:", *key_lines(EvaluateOptions())]), end="")
            raise SystemExit(0)
        options, overrides = EvaluateOptions(), []
        for item in command.overrides:
            key, _, value = item.partition("=")
            if "." in key:
                overrides.append(item)
            else:
                set_key(options, key, value)
        cfg = load_run_config(options.run, command.preset, overrides, command.config_file)
        found = [] if command.print_only else problems(options)
        if found:
            raise ConfigError("; ".join(found))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return options, cfg, command.print_only


def main(argv: Sequence[str] | None = None) -> int:
    use_offline_environment()
    args, cfg, print_only = parse_command_line(argv)
    if print_only:
        from vgrpo.trainer.cli import print_config

        print_config(cfg)
        return 0

    from vgrpo.rewards.registry import RewardSpec, build_reward_set
    from vgrpo.trainer.config import ConfigError, validate
    from vgrpo.trainer.parallelize import apply_finetune_mode
    from vgrpo.trainer.trainer import build_adapter

    try:  # paths (and hub ids) are checked here, when the run starts
        validate(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prompts, metadata = load_prompts_and_metadata(args.prompts)
    names = args.rewards
    paths = [None if p in ("", "none") else p for p in args.reward_paths] or [None] * len(names)
    checkpoint = find_checkpoint(args.run, args.checkpoint) if args.run else None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rewards = build_reward_set([RewardSpec(n, path=p) for n, p in zip(names, paths)], device=device)

    adapter = build_adapter(cfg, device)
    if checkpoint is not None:
        apply_finetune_mode(adapter.denoiser, cfg.finetune)
        load_trainable_weights(adapter.denoiser, checkpoint)
    adapter.denoiser.eval()
    r = cfg.rollout
    images, sample_prompts, scored = evaluate_model(
        adapter, prompts, rewards, images_per_prompt=args.images_per_prompt, seed=args.seed,
        steps=r.steps, solver=r.solver, shift=r.shift, cfg_scale=r.cfg_scale, batch_size=args.batch_size,
        metadata=metadata,
    )
    result = {
        "model": str(checkpoint) if checkpoint else f"{cfg.model.name} ({cfg.model.path or 'shipped weights'})",
        "prompts": args.prompts, "num_prompts": len(prompts), "images_per_prompt": args.images_per_prompt,
        "solver": r.solver, "steps": r.steps, "seed": args.seed,
        "rewards": summarise(scored.scores, scored.valid, scored.names),
    }
    if "shapes" in names:
        from vgrpo.rewards.shapes import category_report

        report = category_report(images, sample_prompts)
        result["categories"] = {c: {view: means[c] for view, means in report.items()} for c in report["score"]}
    out = Path(args.out or (Path(args.run) / "evaluate" if args.run else Path("runs") / "evaluate"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "eval.md").write_text(markdown(result))
    sys.stdout.write(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
