"""The `algorithm` config section, owned by the algorithms (V-GRPO, Flow-GRPO) that read it.

`vgrpo.trainer.config.Config` composes it; the algorithms import it from here, never from the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AlgorithmConfig:
    name: str = "vgrpo"
    """Policy-gradient strategy: "vgrpo" (ELBO surrogate, whole image = one action, ODE rollouts) or "flowgrpo" (the MDP baseline Flow-GRPO: SDE rollouts, every step an action)."""
    num_pairs: int = 4
    """N_MC: timestep-noise pairs per sample for the ELBO surrogate (vgrpo only; ignored by flowgrpo)."""
    sharing: str = "batch"
    """Pair sharing scope: "batch" (one set for all samples), "group" (per prompt) or "none" (vgrpo only)."""
    stratified: bool = True
    """Stratified timesteps: one t in each of N_MC equal chunks of the schedule (vgrpo only)."""
    timestep_shift: float = 1.0
    """Time shift applied to the pair timesteps (vgrpo only)."""
    weighting: str = "adaptive"
    """Surrogate weighting: "adaptive" (x-pred mse / sg(mae)), or the ablations "x", "v", "eps" (vgrpo only)."""
    sde_noise_level: float = 0.7
    """a in the SDE's sigma_t = a sqrt(t / (1 - t)) (flowgrpo only; ignored by vgrpo)."""
    sde_train_steps: int = 0
    """SDE steps trained per iteration: a random subset of the `rollout.steps` steps, drawn per iteration from (seed, iteration) as Flow-GRPO / DanceGRPO do; 0 = all (flowgrpo only)."""
    clip_range: float = 1e-2
    """PPO ratio clip range epsilon; 0 = no clipping. About 1e-2 for vgrpo (per-element mean inside one ratio per image), about 1e-4 for flowgrpo (one ratio per step)."""
    beta: float = 0.0
    """KL weight; 0 = off. vgrpo: KL to `kl_target`; flowgrpo: KL to the reference (base) model, the denoiser with its LoRA adapters disabled (needs finetune.mode=lora)."""
    kl_target: str = "behaviour"
    """What the vgrpo KL (beta > 0) pulls towards: "behaviour" (method.md: theta_old's x-predictions stored by the scoring pass; bounds each iteration's move) or "reference" (the base model, the denoiser with its LoRA adapters disabled: one more no-grad forward per pair in the scoring pass, bounds the whole run's drift; needs finetune.mode=lora). Ignored by flowgrpo, whose KL is always to the reference."""
    mu: int = 1
    """Passes over each rollout batch (PPO epochs)."""
    minibatches: int = 4
    """Optimizer steps per pass; the batch is split by prompt groups into this many minibatches."""
    micro_batch: int = 0
    """Samples per forward/backward on each rank (gradient accumulation); 0 = whole minibatch. The behaviour scoring pass uses the same chunks, so shapes match."""
    reuse_first_surrogate: bool = True
    """The first minibatch of each iteration takes its own detached surrogate (vgrpo) or step log-probs (flowgrpo) as the old ones: ratio exactly 1 in any precision, no scoring forward for it. The others use the scoring pass (vgrpo) or the rollout's stored log-probs (flowgrpo)."""
