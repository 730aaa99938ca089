"""Typed run configuration: dataclass sections, `--section.key=value` overrides, validation.

Every field carries a docstring (the string literal after it); `docs/trainer.md` is the reference.
`validate(config, world_size)` checks everything that can be checked without loading a model and
raises one `ConfigError` listing every problem, so a bad command fails in a second, not after the
model has loaded. Every float field must be finite (NaN and inf are refused by one generic walk
over the fields, naming the key); prompt files are read and checked there too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vgrpo.algorithms.config import AlgorithmConfig
from vgrpo.sampling.config import RolloutConfig
from vgrpo.trainer.lr_schedule import SCHEDULES
from vgrpo.utils import hub
from vgrpo.utils.cli import ConfigError, parse_value, resolve_key
from vgrpo.utils.prompt_file import PromptFileError, read_prompt_file

KL_TARGETS = ("behaviour", "reference")


@dataclass
class JobConfig:
    name: str = "shapes-cpu"
    """Run name: the run folder is `<output_dir>/<name>`."""
    output_dir: str = "runs"
    """Parent folder of run folders."""
    seed: int = 0
    """Seed of every random stream (prompts, rollout noise, pairs, evaluation noise)."""
    iterations: int = 100
    """Number of V-GRPO iterations (one rollout batch each)."""
    device: str = "auto"
    """"auto" (cuda when available), "cpu" or "cuda"."""
    max_skipped_iterations: int = 5
    """Stop the run with an error (exit status 1) after this many consecutive iterations without an update, naming the cause: no valid rewards, zero-variance groups (every group's rewards equal: no learning signal) or a non-finite loss / gradient in every optimizer step; 0 = never stop."""
    overwrite: bool = False
    """With checkpoint.resume=none in a run folder that holds an earlier run (checkpoints or metrics): move that run aside to `<name>.old-<n>` (never deleted) and start afresh. Without it such a start is refused."""


@dataclass
class ModelConfig:
    name: str = "shapes"
    """Model adapter: "shapes" (the built-in world's tiny MMDiT), "flux" (FLUX.1-dev) or "sd3" (SD 3.5), see vgrpo.models.registry."""
    path: str | None = None
    """Weights folder (a diffusers-format directory for flux / sd3) or a Hugging Face hub id (`org/name`, fetched into the HF cache; with HF_HUB_OFFLINE=1 it must be there already); None = the shapes base shipped with the package (vgrpo/assets/shapes_web, the web-caption model; vgrpo/assets/shapes_base is the clean-caption one)."""
    init: str = "pretrained"
    """"pretrained" (load the weights) or "random" (same architecture, seeded random weights; for tests and smoke runs)."""
    dtype: str = "float32"
    """Parameter dtype of the loaded model: "float32" or "bfloat16" (bf16 compute on GPU is done by FSDP mixed precision instead)."""
    resolution: int | None = None
    """Image side in pixels for flux / sd3 (None = the family's default: 1024 / 512)."""
    guidance: float | None = None
    """FLUX distilled-guidance embedding value (None = 3.5)."""
    max_sequence_length: int | None = None
    """T5 tokens per prompt for flux / sd3 (None = 512 / 256)."""
    use_t5: bool | None = None
    """SD3: encode prompts with T5-XXL too (None = yes; no = zeros, as the pipeline does)."""
    offload: bool | None = None
    """Keep text encoders and VAE on the CPU between uses (None = on for GPU runs)."""


@dataclass
class JudgeConfig:
    model: str = ""
    """Model name sent in each request to the judge endpoint; "" = the reward's name ("unifiedreward" or "http_judge")."""
    template: str = ""
    """User message sent with each image, "{prompt}" replaced by the prompt (it must appear); "" = the built-in template asking for a 1-5 rating."""
    score_min: float = 1.0
    """Lowest valid judge score; a reply below it, or without a score, marks the sample invalid (dropped from its group)."""
    score_max: float = 5.0
    """Highest valid judge score; a reply above it marks the sample invalid."""
    api_key_env: str = ""
    """Name of the environment variable holding the API key (upper case, digits, "_"; "" = no key); the key is sent as a Bearer token to the endpoint's own origin only (redirects to another origin are not followed) and is never written to config.json, logs or errors. An endpoint URL with credentials or a query string is refused."""
    timeout_s: float = 60.0
    """Deadline of one request in seconds, from connecting to the reply's last byte (one bound per request, not per socket read)."""
    retries: int = 3
    """Extra attempts after a connection error, timeout, HTTP 429 or 5xx: each round resends all of the batch's failed requests at once, after a backoff of 0.5 s doubling up to 8 s."""
    max_response_bytes: int = 1048576
    """Largest reply body read; a longer reply marks the sample invalid (a chat completion with a score is a few kB)."""


@dataclass
class RewardConfig:
    names: list[str] = field(default_factory=lambda: ["shapes"])
    """Rewards to optimise, by registry name (`vgrpo.rewards.registry`): "shapes" (the built-in verifier), "jpeg_compressibility", "pickscore", "hpsv2", ..."""
    paths: list[str] = field(default_factory=list)
    """Per reward, its weights folder, hub id (as `model.path`) or endpoint URL ("none" for rewards that need none); default none for all."""
    weights: list[float] = field(default_factory=list)
    """One weight per reward (default 1 each); the advantage is the weighted sum of per-reward group-normalised advantages."""
    std_eps: float = 1e-4
    """Added to the group std when normalising advantages."""
    soft_clip_eta: float = 0.0
    """Advantage soft-clip eta (A <- eta tanh(A / eta)); 0 = off. 3 is typical for fully on-policy runs."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    """Options of the HTTP judge rewards ("http_judge", "unifiedreward"): `--reward.judge.<key>=value`."""
    overlap: str = "auto"
    """"on": decode and score each finished rollout chunk (`rollout.batch_size` images) on a worker thread (its own CUDA stream) while the next chunk is sampled (same scores, earlier); "off": score after the whole rollout; "auto": on for CUDA runs, off on CPU (there the worker competes with the sampler for the same cores: 2-core CPU, 32 images, 1.71 s on vs 1.31 s off)."""


@dataclass
class OptimConfig:
    lr: float = 5e-4
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.999
    """AdamW beta2."""
    eps: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float = 1.0
    """Gradient clipping by global norm; 0 = off."""
    warmup_steps: int = 0
    """Linear learning-rate warmup in optimizer steps."""
    schedule: str = "constant"
    """Learning rate after the warm-up: "constant", or "cosine" (half a cosine from `lr` down to
    `lr x final_lr_ratio` at the last optimizer step of `job.iterations`)."""
    final_lr_ratio: float = 0.1
    """Last learning rate of the cosine schedule as a fraction of `lr` (ignored by "constant")."""
    ema_decay: float = 0.0
    """EMA of the trainable parameters, updated after each optimizer step with decay min(ema_decay, n / (n + 9)) at step n (Flow-GRPO's warm-up); 0 = off. Saved in checkpoints, exported with `python -m vgrpo.export --ema`; it never changes the trained parameters. 0.9 to 0.999 are usual."""


@dataclass
class FinetuneConfig:
    mode: str = "lora"
    """"lora" (peft adapters on attention/MLP linears) or "full"."""
    lora_rank: int = 16
    """LoRA rank r."""
    lora_alpha: float = 32.0
    """LoRA alpha (scale alpha / r)."""
    lora_dropout: float = 0.0
    """LoRA dropout."""
    lora_targets: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    """Module name suffixes that get LoRA adapters."""


@dataclass
class ParallelConfig:
    fsdp: str = "auto"
    """FSDP2 (fully_shard per block and root): "auto" (on under torchrun with several ranks or on GPU), "on", "off"."""
    mixed_precision: str = "auto"
    """"auto" (bf16 params/compute with fp32 reductions on GPU, fp32 on CPU), "bf16" or "fp32"."""
    compile: bool = False
    """torch.compile each transformer block."""
    activation_checkpointing: bool = False
    """Recompute each block's activations in backward (saves memory)."""
    backend: str = "auto"
    """Process-group backend: "auto" (nccl on GPU, gloo on CPU), "gloo" or "nccl"."""
    fp8: bool = False
    """FP8 training of the denoiser's linear layers via torchao (embedders, modulation and final projection stay high precision); emulated off CUDA."""
    attention: str = "sdpa"
    """Attention backend of the denoiser: "sdpa" (PyTorch) or "flash" (flash-attn, the `flash` extra)."""
    timeout_s: float = 1800.0
    """Process-group timeout in seconds: a collective that waits longer (a rank stopped, hung or lost) fails the run instead of hanging it for good. Under torchrun the launcher then stops the other ranks (about 30 s more). NCCL enforces it through its watchdog (TORCH_NCCL_ASYNC_ERROR_HANDLING, on by default)."""


@dataclass
class CheckpointConfig:
    every: int = 25
    """Save every this many iterations (and at the end); 0 = only at the end; -1 = never."""
    keep_last: int = 2
    """Keep this many most recent checkpoints."""
    resume: str = "auto"
    """"auto" (latest checkpoint in the run folder, if any), "none", or a checkpoint folder."""
    allow_changes: list[str] = field(default_factory=list)
    """Settings (`section.key`) that may differ from the resumed checkpoint's. Any other difference in a setting that shapes the training trajectory is refused, naming the key and both values; an allowed change is recorded in metrics.jsonl. job.iterations, job.name, job.output_dir, job.overwrite, job.max_skipped_iterations, parallel.timeout_s, checkpoint.*, eval.* and logging.* may always change."""


@dataclass
class EvalConfig:
    every: int = 25
    """Evaluation every this many iterations (and before the first and after the last); 0 = only before/after; -1 = never. Flux / sd3 are evaluated only when `eval.prompt_file` is set."""
    images_per_category: int = 128
    """Held-out images per category, cycling over the category's held-out prompts (categories weigh equally in the overall score, as in GenEval). With 32, two checkpoints 15 iterations apart scored 0.448 and 0.375, and 8 images per held-out prompt on other noise ranked them the other way (0.378, 0.412)."""
    grid_images: int = 36
    """Images in each saved PNG sample grid, each captioned with its prompt (shapes world: one column per category; a prompt file: `images_per_prompt` columns, 6 when that is 1); 0 = no grid."""
    steps: int = 0
    """Deterministic ODE solver steps of the held-out images; 0 = `rollout.steps`. Set it when comparing runs whose rollouts differ (a Flow-GRPO SDE rollout vs a V-GRPO ODE rollout) so both are evaluated with the same sampler."""
    solver: str = ""
    """ODE solver of the held-out images ("euler", "heun", "dpm++2m"); "" = `rollout.solver`."""
    prompt_file: str | None = None
    """Evaluation prompts, text or JSONL with metadata (as `rollout.prompt_file`; a "category" field gives per-category means); None = the shapes world's held-out split (flux / sd3: no evaluation)."""
    images_per_prompt: int = 1
    """Images per prompt of `eval.prompt_file`."""
    rewards: list[str] = field(default_factory=list)
    """Rewards scoring the evaluation images, by registry name; empty = the training rewards for a prompt file, the verifier only for the shapes held-out split (which always reports it)."""
    reward_paths: list[str] = field(default_factory=list)
    """Per eval reward, its weights folder, hub id or endpoint URL ("none" for none); a reward trained with under the same path is reused, not loaded again."""
    use_ema: bool = False
    """Evaluate with the EMA of the trainable parameters swapped in (needs optim.ema_decay > 0)."""


@dataclass
class LoggingConfig:
    tensorboard: bool = True
    """Write TensorBoard event files in the run folder."""
    progress: bool = True
    """Show a progress bar (rank 0)."""
    wandb: bool = False
    """Also log to Weights & Biases (the `wandb` extra): the config, every train and eval metric, the sample grids."""
    wandb_project: str = ""
    """W&B project; "" = $WANDB_PROJECT, else "vgrpo"."""
    wandb_run_name: str = ""
    """W&B run name; "" = $WANDB_NAME, else job.name."""
    wandb_mode: str = ""
    """W&B mode: "online", "offline" (files only, `wandb sync` later) or "disabled"; "" = $WANDB_MODE, else online."""


@dataclass
class Config:
    job: JobConfig = field(default_factory=JobConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_dir(self) -> Path:
        return Path(self.job.output_dir) / self.job.name

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Config:
        cfg = Config()
        for section, values in data.items():
            _fill(_section(cfg, section), section, values)
        return cfg


# ----------------------------------------------------------------------------- overrides


def _section(cfg: Config, name: str) -> Any:
    names = [f.name for f in dataclasses.fields(cfg)]
    if name not in names:
        raise ConfigError(f"unknown config section {name!r}; sections are {names}")
    return getattr(cfg, name)


def _field_type(section_obj: Any, section: str, key: str) -> Any:
    hints = typing.get_type_hints(type(section_obj))
    if key not in hints:
        raise ConfigError(f"unknown config key {section}.{key}; keys of [{section}] are {sorted(hints)}")
    return hints[key]


def _fill(obj: Any, where: str, values: dict[str, Any]) -> None:
    """Set `obj`'s fields from a (nested) dict, refusing unknown keys."""
    for key, value in values.items():
        tp = _field_type(obj, where, key)
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            _fill(getattr(obj, key), f"{where}.{key}", value)
        else:
            setattr(obj, key, value)


def _resolve_key(cfg: Config, dotted: str) -> tuple[Any, str, Any]:
    """(object holding the field, field name, field type) of "section.key" or "section.group.key"."""
    section, _, rest = dotted.partition(".")
    return resolve_key(_section(cfg, section), rest, where=section)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply `--section.key=value` (or `section.key=value`) strings in order; lists are comma-separated."""
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        if "=" not in text or "." not in text.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} must look like --section.key=value")
        dotted, value = text.split("=", 1)
        obj, key, tp = _resolve_key(cfg, dotted)
        setattr(obj, key, parse_value(value, tp, dotted))
    return cfg


# ----------------------------------------------------------------------------- validation


def validate(cfg: Config, world_size: int = 1) -> None:
    """Check the whole config (and its fit to `world_size` ranks); raise one ConfigError listing every problem."""
    errors: list[str] = []

    def need(cond: bool, message: str) -> None:
        if not cond:
            errors.append(message)

    j, m, r, w, a, o = cfg.job, cfg.model, cfg.rollout, cfg.reward, cfg.algorithm, cfg.optim
    need(j.iterations >= 1, f"job.iterations must be >= 1, got {j.iterations}")
    need(j.device in ("auto", "cpu", "cuda"), f"job.device must be auto|cpu|cuda, got {j.device!r}")
    need(bool(j.name) and j.name not in (".", "..") and not set(j.name) & {"/", "\\", "\0"},
         f"job.name must be one folder name (no '/', not '..'), got {j.name!r}")
    from vgrpo.algorithms import ALGORITHMS
    from vgrpo.models.registry import FAMILIES
    from vgrpo.objective.pairs import SHARING_SCOPES
    from vgrpo.ops.checks import WEIGHTINGS
    from vgrpo.sampling.ode import SOLVERS
    from vgrpo.tasks.registry import BUILT_IN_TRAINING_PROMPTS

    family = FAMILIES.get(m.name)
    need(family is not None, f"model.name must be {'|'.join(FAMILIES)}, got {m.name!r}")
    need(family is None or not family.needs_path or m.path is not None,
         f"model.path must name the local diffusers directory of model.name={m.name!r}")
    need(family is None or m.init != "random" or family.random is not None,
         f"model.init=random exists only for the models {[n for n, f in FAMILIES.items() if f.random]}")
    need(m.resolution is None or (m.resolution > 0 and m.resolution % 16 == 0),
         f"model.resolution must be a positive multiple of 16, got {m.resolution}")
    need(r.prompt_file is not None or family is None or m.name in BUILT_IN_TRAINING_PROMPTS,
         f"rollout.prompt_file is required for model.name={m.name!r} (training prompts: a text file, one per "
         f"line, or JSON Lines with a \"prompt\" field); only {sorted(BUILT_IN_TRAINING_PROMPTS)} has built-in ones")
    if r.prompt_file is not None:
        try:
            read_prompt_file(r.prompt_file)
        except PromptFileError as exc:
            errors.append(f"rollout.prompt_file: {exc}")
    need(m.init in ("pretrained", "random"), f"model.init must be pretrained|random, got {m.init!r}")
    if msg := hub.path_problem(m.path, "model.path"):
        errors.append(msg)
    need(m.dtype in ("float32", "bfloat16"), f"model.dtype must be float32|bfloat16, got {m.dtype!r}")
    need(r.prompts_per_iteration >= 1, f"rollout.prompts_per_iteration must be >= 1, got {r.prompts_per_iteration}")
    need(r.group_size >= 2, f"rollout.group_size must be >= 2 (advantages need a group), got {r.group_size}")
    need(r.steps >= 1, f"rollout.steps must be >= 1, got {r.steps}")
    need(r.solver in SOLVERS, f"rollout.solver must be {'|'.join(SOLVERS)}, got {r.solver!r}")
    need(r.shift > 0, f"rollout.shift must be > 0, got {r.shift}")
    need(r.cfg_scale >= 1.0, f"rollout.cfg_scale must be >= 1 (1 = no guidance), got {r.cfg_scale}")
    need(r.prompt_sampling in ("category", "uniform"), f"rollout.prompt_sampling must be category|uniform, got {r.prompt_sampling!r}")
    need(r.batch_size >= 1, f"rollout.batch_size must be >= 1, got {r.batch_size}")
    from vgrpo.rewards.registry import BUILDERS

    known_rewards = sorted(BUILDERS)
    need(bool(w.names), "reward.names must list at least one reward")
    for name in w.names:
        need(name in known_rewards, f"reward.names: unknown reward {name!r}; known: {known_rewards}")
    need(len(set(w.names)) == len(w.names), f"reward.names has duplicates: {w.names}")
    need(not w.weights or len(w.weights) == len(w.names),
         f"reward.weights has {len(w.weights)} entries for {len(w.names)} rewards {w.names}")
    need(not w.paths or len(w.paths) == len(w.names),
         f"reward.paths has {len(w.paths)} entries for {len(w.names)} rewards {w.names}")
    errors += [msg for i, p in enumerate(w.paths) if (msg := hub.problem(p, f"reward.paths[{i}]"))]
    need(w.std_eps > 0, f"reward.std_eps must be > 0, got {w.std_eps}")
    need(w.soft_clip_eta >= 0, f"reward.soft_clip_eta must be >= 0 (0 = off), got {w.soft_clip_eta}")
    need(a.name in ALGORITHMS, f"algorithm.name must be {'|'.join(ALGORITHMS)}, got {a.name!r}")
    need(a.num_pairs >= 1, f"algorithm.num_pairs (N_MC) must be >= 1, got {a.num_pairs}")
    need(a.sharing in SHARING_SCOPES, f"algorithm.sharing must be {'|'.join(SHARING_SCOPES)}, got {a.sharing!r}")
    need(a.timestep_shift > 0, f"algorithm.timestep_shift must be > 0, got {a.timestep_shift}")
    need(a.weighting in WEIGHTINGS, f"algorithm.weighting must be {'|'.join(WEIGHTINGS)}, got {a.weighting!r}")
    need(0 <= a.clip_range < 1, f"algorithm.clip_range must be in [0, 1) (0 = off), got {a.clip_range}")
    need(a.beta >= 0, f"algorithm.beta must be >= 0, got {a.beta}")
    need(a.sde_noise_level > 0, f"algorithm.sde_noise_level must be > 0, got {a.sde_noise_level}")
    need(a.sde_train_steps >= 0, f"algorithm.sde_train_steps must be >= 0 (0 = all), got {a.sde_train_steps}")
    need(a.name != "flowgrpo" or a.sde_train_steps <= r.steps,
         f"algorithm.sde_train_steps ({a.sde_train_steps}) must be <= rollout.steps ({r.steps}), the SDE steps "
         "it picks from (0 = all)")
    need(a.kl_target in KL_TARGETS, f"algorithm.kl_target must be {'|'.join(KL_TARGETS)}, got {a.kl_target!r}")
    need(not (a.name == "vgrpo" and a.beta > 0 and a.kl_target == "reference" and cfg.finetune.mode != "lora"),
         f"algorithm.kl_target=reference with algorithm.beta={a.beta} needs finetune.mode=lora: the reference is "
         f"the denoiser with its LoRA adapters disabled, and finetune.mode={cfg.finetune.mode!r} keeps no base "
         "model (use algorithm.kl_target=behaviour)")
    need(not (a.name == "flowgrpo" and a.beta > 0 and cfg.finetune.mode != "lora"),
         f"algorithm.beta={a.beta} with algorithm.name=flowgrpo needs finetune.mode=lora: the KL reference is "
         f"the denoiser with its LoRA adapters disabled, and finetune.mode={cfg.finetune.mode!r} keeps no base "
         "model (set algorithm.beta=0)")
    need(a.mu >= 1, f"algorithm.mu must be >= 1, got {a.mu}")
    need(a.minibatches >= 1, f"algorithm.minibatches must be >= 1, got {a.minibatches}")
    need(a.micro_batch >= 0, f"algorithm.micro_batch must be >= 0 (0 = whole minibatch), got {a.micro_batch}")
    if r.prompts_per_iteration >= 1 and a.minibatches >= 1 and world_size >= 1:
        per = world_size * a.minibatches
        if r.prompts_per_iteration % per:
            errors.append(
                f"rollout.prompts_per_iteration ({r.prompts_per_iteration}) must be a multiple of "
                f"world size x algorithm.minibatches ({world_size} x {a.minibatches} = {per}): every rank "
                "takes whole prompt groups of every minibatch"
            )
        elif a.micro_batch > 0 and r.group_size >= 1:
            local = r.prompts_per_iteration // per * r.group_size
            if local % a.micro_batch:
                errors.append(
                    f"algorithm.micro_batch ({a.micro_batch}) must divide the per-rank minibatch of "
                    f"{local} samples (prompts_per_iteration / (world x minibatches) x group_size)"
                )
    need(o.lr > 0, f"optim.lr must be > 0, got {o.lr}")
    need(o.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {o.weight_decay}")
    need(0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, f"optim.beta1/beta2 must be in [0, 1), got {o.beta1}, {o.beta2}")
    need(o.eps > 0, f"optim.eps must be > 0, got {o.eps}")
    need(o.max_grad_norm >= 0, f"optim.max_grad_norm must be >= 0 (0 = off), got {o.max_grad_norm}")
    need(o.warmup_steps >= 0, f"optim.warmup_steps must be >= 0, got {o.warmup_steps}")
    need(o.schedule in SCHEDULES, f"optim.schedule must be one of {'|'.join(SCHEDULES)}, got {o.schedule!r}")
    need(0 <= o.final_lr_ratio <= 1, f"optim.final_lr_ratio must be in [0, 1], got {o.final_lr_ratio}")
    need(0 <= o.ema_decay < 1, f"optim.ema_decay must be in [0, 1) (0 = off), got {o.ema_decay}")
    f = cfg.finetune
    need(f.mode in ("lora", "full"), f"finetune.mode must be lora|full, got {f.mode!r}")
    if f.mode == "lora":
        need(f.lora_rank >= 1, f"finetune.lora_rank must be >= 1, got {f.lora_rank}")
        need(f.lora_alpha > 0, f"finetune.lora_alpha must be > 0, got {f.lora_alpha}")
        need(0 <= f.lora_dropout < 1, f"finetune.lora_dropout must be in [0, 1), got {f.lora_dropout}")
        need(bool(f.lora_targets), "finetune.lora_targets must name at least one module")
    p = cfg.parallel
    need(p.fsdp in ("auto", "on", "off"), f"parallel.fsdp must be auto|on|off, got {p.fsdp!r}")
    need(p.mixed_precision in ("auto", "bf16", "fp32"), f"parallel.mixed_precision must be auto|bf16|fp32, got {p.mixed_precision!r}")
    need(p.backend in ("auto", "gloo", "nccl"), f"parallel.backend must be auto|gloo|nccl, got {p.backend!r}")
    need(p.attention in ("sdpa", "flash"), f"parallel.attention must be sdpa|flash, got {p.attention!r}")
    need(not (p.fsdp == "off" and world_size > 1), f"parallel.fsdp=off needs a single process, world size is {world_size}")
    c = cfg.checkpoint
    need(c.every >= -1, f"checkpoint.every must be >= -1, got {c.every}")
    need(c.keep_last >= 1, f"checkpoint.keep_last must be >= 1, got {c.keep_last}")
    need(c.resume in ("auto", "none") or Path(c.resume).is_dir(),
         f"checkpoint.resume must be auto|none or an existing checkpoint folder, got {c.resume!r}")
    need(not j.overwrite or c.resume == "none",
         f"job.overwrite=true starts a new run and needs checkpoint.resume=none, got {c.resume!r}")
    keys = {f.name: typing.get_type_hints(type(getattr(cfg, f.name))) for f in dataclasses.fields(cfg)}
    for key in c.allow_changes:
        section, _, name = key.partition(".")
        need(name in keys.get(section, {}), f"checkpoint.allow_changes: {key!r} is not a config key (section.key)")
    e = cfg.eval
    need(e.every >= -1, f"eval.every must be >= -1, got {e.every}")
    need(e.images_per_category >= 1, f"eval.images_per_category must be >= 1, got {e.images_per_category}")
    need(e.grid_images >= 0, f"eval.grid_images must be >= 0, got {e.grid_images}")
    need(cfg.reward.overlap in ("auto", "on", "off"), f"reward.overlap must be auto|on|off, got {cfg.reward.overlap!r}")
    need(e.steps >= 0, f"eval.steps must be >= 0 (0 = rollout.steps), got {e.steps}")
    need(e.solver in ("", *SOLVERS), f"eval.solver must be {'|'.join(SOLVERS)} or empty (= rollout.solver), got {e.solver!r}")
    errors.extend(_eval_and_logging_problems(cfg))
    need(j.max_skipped_iterations >= 0, f"job.max_skipped_iterations must be >= 0 (0 = never stop), got {j.max_skipped_iterations}")
    need(p.timeout_s > 0, f"parallel.timeout_s must be > 0, got {p.timeout_s}")
    errors.extend(_judge_problems(cfg))
    errors.extend(_output_dir_problem(j.output_dir))
    errors.extend(_non_finite_floats(cfg))
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))


def _eval_and_logging_problems(cfg: Config) -> list[str]:
    """eval.prompt_file / eval.rewards / eval.use_ema and the W&B switches."""
    from vgrpo.rewards.http_judge import endpoint_problem
    from vgrpo.rewards.registry import BUILDERS

    e, lg, problems = cfg.eval, cfg.logging, []
    if e.prompt_file is not None:
        try:
            read_prompt_file(e.prompt_file)
        except PromptFileError as exc:
            problems.append(f"eval.prompt_file: {exc}")
    problems += [f"eval.rewards: unknown reward {n!r}; known: {sorted(BUILDERS)}" for n in e.rewards if n not in BUILDERS]
    if len(set(e.rewards)) != len(e.rewards):
        problems.append(f"eval.rewards has duplicates: {e.rewards}")
    if e.reward_paths and len(e.reward_paths) != len(e.rewards):
        problems.append(f"eval.reward_paths has {len(e.reward_paths)} entries for {len(e.rewards)} rewards {e.rewards}")
    problems += [f"eval.reward_paths[{i}]: {m}" for i, p in enumerate(e.reward_paths) if (m := endpoint_problem(p))]
    problems += [m for i, p in enumerate(e.reward_paths) if (m := hub.problem(p, f"eval.reward_paths[{i}]"))]
    if e.images_per_prompt < 1:
        problems.append(f"eval.images_per_prompt must be >= 1, got {e.images_per_prompt}")
    if e.use_ema and not cfg.optim.ema_decay > 0:
        problems.append("eval.use_ema=true needs an EMA: set optim.ema_decay (e.g. 0.99)")
    if lg.wandb_mode not in ("", "online", "offline", "disabled"):
        problems.append(f"logging.wandb_mode must be online|offline|disabled or empty (= $WANDB_MODE), got {lg.wandb_mode!r}")
    if lg.wandb:
        import importlib.util

        if importlib.util.find_spec("wandb") is None:
            problems.append("logging.wandb=true needs the wandb package: pip install 'vgrpo[wandb]' (or pip install wandb)")
    return problems


def _non_finite_floats(obj: Any, where: str = "") -> list[str]:
    """'key must be finite' for every NaN / inf float field (and list item) of `obj`, its groups included."""
    problems = []
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{where}.{f.name}" if where else f.name
        if dataclasses.is_dataclass(value):
            problems += _non_finite_floats(value, key)
            continue
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for i, v in items:
            if isinstance(v, float) and not math.isfinite(v):
                problems.append(f"{key}{'' if i is None else f'[{i}]'} must be a finite number, got {v}")
    return problems


def _output_dir_problem(output_dir: str) -> list[str]:
    """A problem when the run folder cannot be created under `output_dir` (checked on its nearest existing folder)."""
    path = Path(output_dir).expanduser().absolute()
    existing = next((q for q in (path, *path.parents) if q.exists()), None)
    if existing is None or not existing.is_dir():
        return [f"job.output_dir {output_dir!r} cannot be created: {existing} is not a folder"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"job.output_dir {output_dir!r} is not writable: no write permission on {existing}"]
    return []


def _judge_problems(cfg: Config) -> list[str]:
    """Endpoint URLs without credentials, and the `reward.judge` options when a judge reward is named."""
    from vgrpo.rewards.http_judge import endpoint_problem
    from vgrpo.rewards.registry import JUDGE_REWARDS

    w, jd = cfg.reward, cfg.reward.judge
    problems = [f"reward.paths[{i}]: {msg}" for i, path in enumerate(w.paths) if (msg := endpoint_problem(path))]
    if not any(name in JUDGE_REWARDS for name in w.names):
        return problems
    if jd.template and "{prompt}" not in jd.template:
        problems.append("reward.judge.template must contain {prompt} (where the prompt goes)")
    if not jd.score_min < jd.score_max:
        problems.append(f"reward.judge.score_min ({jd.score_min}) must be < reward.judge.score_max ({jd.score_max})")
    if jd.api_key_env and not re.fullmatch(r"[A-Z_][A-Z0-9_]{0,63}", jd.api_key_env):
        # never echoed: a key put here by mistake must not reach the message
        problems.append(f"reward.judge.api_key_env must be the NAME of an environment variable (upper case, digits, "
                        f"_), not the key; got a value of {len(jd.api_key_env)} characters that is not one")
    elif jd.api_key_env and not os.environ.get(jd.api_key_env):
        problems.append(f"reward.judge.api_key_env names {jd.api_key_env}, which is not set in the environment")
    if not jd.timeout_s > 0:
        problems.append(f"reward.judge.timeout_s must be > 0, got {jd.timeout_s}")
    if jd.retries < 0:
        problems.append(f"reward.judge.retries must be >= 0, got {jd.retries}")
    if jd.max_response_bytes < 1024:
        problems.append(f"reward.judge.max_response_bytes must be >= 1024, got {jd.max_response_bytes}")
    return problems
