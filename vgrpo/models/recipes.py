"""The paper's training recipes for FLUX.1-dev and SD 3.5 Medium as config overrides.

Each recipe is a plain dict `"section.key" -> value`, applied on top of the default `Config`
exactly like `--section.key=value` command-line overrides. Values marked (inferred) are not in what
we could read of the paper (see docs/method.md) and are our choice; docs/models.md has the same
table with the sources. Keys of the `model.*` options that the adapters take (resolution,
guidance, max_sequence_length, use_t5) and of the speed switches (parallel.fp8,
parallel.attention) are the adapters' / accel's options; the trainer forwards them.
"""

from __future__ import annotations

from typing import Any

FLUX_DEV_RECIPE: dict[str, Any] = {
    "job.name": "flux-dev",
    "job.iterations": 300,                  # paper's headline table: 300 iterations
    "model.name": "flux",
    "model.dtype": "bfloat16",
    "model.resolution": 720,                # FLUX baseline family: 720 x 720
    "model.guidance": 3.5,                  # distilled guidance embedding; FluxPipeline default (inferred)
    "model.max_sequence_length": 512,       # T5 tokens, FluxPipeline default
    "rollout.solver": "dpm++2m",            # DPM-Solver++ rollouts
    "rollout.steps": 16,                    # NFE_old = 16 + N_MC
    "rollout.shift": 3.0,                   # FLUX baseline family: shift 3
    "rollout.cfg_scale": 1.0,               # no true CFG
    "rollout.group_size": 12,               # FLUX baseline family: group 12
    "rollout.prompts_per_iteration": 24,    # (inferred)
    "algorithm.num_pairs": 4,               # N_MC = 4
    "algorithm.clip_range": 1e-2,           # ratio clipping, e in [6e-3, 1e-2]
    "algorithm.beta": 0.0,                  # no KL in the FLUX main run
    "algorithm.mu": 2,                      # several gradient steps per rollout (inferred count)
    "algorithm.minibatches": 2,             # (inferred)
    "reward.names": ["hpsv2"],              # HPSv2.1, as the FLUX baseline family (inferred)
    "reward.soft_clip_eta": 3.0,            # method.md section 6, "few sampling steps (FLUX, 16 steps)" row
    "finetune.mode": "full",                # FLUX baseline family: full fine-tune
    "optim.lr": 1e-5,                       # FLUX baseline family
    "parallel.mixed_precision": "bf16",
    "parallel.activation_checkpointing": True,
    "parallel.compile": True,
}
"""FLUX.1-dev: DPM-Solver++ 16-step rollouts, N_MC 4, ratio clipping, full fine-tune at 720 x 720."""

SD35M_STAGE1_RECIPE: dict[str, Any] = {
    "job.name": "sd35m-stage1",
    "model.name": "sd3",
    "model.dtype": "bfloat16",
    "model.resolution": 512,                # SD 3.5 M RL setting of the Flow-GRPO family (inferred)
    "model.max_sequence_length": 256,       # T5 tokens, StableDiffusion3Pipeline default
    "rollout.solver": "euler",              # 40-step ODE; the solver is not named (inferred)
    "rollout.steps": 40,
    "rollout.shift": 3.0,                   # SD 3.5 scheduler_config shift
    "rollout.cfg_scale": 1.0,               # without CFG
    "rollout.prompts_per_iteration": 48,    # 48 prompts x 24 images
    "rollout.group_size": 24,
    "algorithm.num_pairs": 4,               # N_MC 4
    "algorithm.mu": 1,                      # one gradient step per rollout (ratio = 1, no KL needed)
    "algorithm.minibatches": 1,
    "algorithm.beta": 0.0,
    "reward.names": ["hpsv2", "pickscore", "clipscore"],
    "reward.soft_clip_eta": 3.0,            # advantage soft-clip eta 3
    "finetune.mode": "lora",
    "finetune.lora_rank": 32,
    "finetune.lora_alpha": 64.0,
    "optim.lr": 3e-4,
    "parallel.mixed_precision": "bf16",
    "parallel.activation_checkpointing": True,
}
"""SD 3.5 Medium stage 1: 40-step ODE without CFG, LoRA r32 / alpha 64, lr 3e-4, one gradient step
per rollout, soft-clip eta 3, rewards HPSv2.1 + PickScore + CLIPScore."""

RECIPES: dict[str, dict[str, Any]] = {"flux-dev": FLUX_DEV_RECIPE, "sd35m-stage1": SD35M_STAGE1_RECIPE}
