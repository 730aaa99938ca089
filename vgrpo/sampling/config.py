"""The `rollout` config section: how many images per iteration, and how they are sampled.

Owned by the sampling layer (the rollouts read it); `vgrpo.trainer.config.Config` composes it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RolloutConfig:
    prompts_per_iteration: int = 16
    """Prompts per iteration (global, across all ranks); each gets `group_size` images."""
    group_size: int = 8
    """G: images per prompt; advantages are normalised within each group."""
    steps: int = 8
    """Sampler steps per image: deterministic ODE solver steps (vgrpo) or SDE steps (flowgrpo)."""
    solver: str = "dpm++2m"
    """ODE solver: "euler", "heun" or "dpm++2m" (vgrpo rollouts and, for both algorithms, evaluation)."""
    shift: float = 1.0
    """Time shift of the sampling schedule (SD3 / FLUX style); 1 = none."""
    cfg_scale: float = 1.0
    """Classifier-free guidance scale for rollouts; 1 = no guidance (the V-GRPO default)."""
    batch_size: int = 64
    """Images per sampler call on each rank (memory knob; does not change results)."""
    prompt_file: str | None = None
    """Training prompts: a text file (one per line) or JSON Lines ("*.jsonl": a "prompt" field per line, the other fields are its metadata, handed to the rewards that take it, e.g. the OCR reward's "text"); None = the model family's built-in prompts (the shapes world's training split; flux / sd3 have none, so they need this file)."""
    prompt_sampling: str = "category"
    """How an iteration's prompts are drawn from the training set: "category" (a uniform category, then a prompt of it: every category trains equally) or "uniform" (distinct prompts uniformly)."""
