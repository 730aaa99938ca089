"""Expected wall-clock of a plan, from each run's resolved config and a per-evaluation cost model.

The model counts model evaluations per image (sampling, behaviour scoring, training forward +
backward) the way method.md section 5 does and prices them for the built-in world's model (LoRA
r16, float32) so that a shapes-cpu V-GRPO iteration of 16 prompts x 8 images takes about 6.5 s,
the middle of the 5-8 s that 2 quiet CPU cores take. It is a planning aid printed before a
comparison starts; on a busy machine runs take several times longer, and the runner re-estimates
the time left from the measured speed of the runs it has finished.
"""

from __future__ import annotations

from dataclasses import dataclass

from vgrpo.trainer.config import Config

# Seconds per image and model evaluation on 2 quiet CPU cores (shapes-cpu, batches of 64 images).
SAMPLING_S_PER_NFE = 3.0e-3
SCORING_S_PER_NFE = 1.5e-3  # no-grad forward of a batch of (image, pair) inputs
TRAINING_S_PER_NFE = 5.0e-3  # forward + backward of one (image, pair) input or one SDE step
REWARD_S_PER_IMAGE = 1.5e-3
RUN_STARTUP_S = 15.0  # interpreter, imports, model load


@dataclass(frozen=True)
class RunEstimate:
    """Model evaluations per image of one training iteration, and the run's expected seconds."""

    nfe_rollout: float
    nfe_old: float
    nfe_update: float
    seconds: float


def sampler_nfe(steps: int, solver: str, cfg_scale: float) -> float:
    """Denoiser evaluations per image of one ODE / SDE sample (Heun doubles, CFG doubles)."""
    return steps * (2 if solver == "heun" else 1) * (2 if cfg_scale != 1.0 else 1)


def evaluation_count(cfg: Config) -> int:
    """Held-out evaluations of a run: before the first iteration, every `eval.every`, after the last."""
    n, every = cfg.job.iterations, cfg.eval.every
    if every < 0:
        return 0
    points = {0, n}
    if every > 0:
        points.update(range(every, n + 1, every))
    return len(points)


def estimate_run(cfg: Config) -> RunEstimate:
    """Expected NFE per image per iteration and total seconds of one run of `cfg`."""
    a = cfg.algorithm
    r, e = cfg.rollout, cfg.eval
    rollout = sampler_nfe(r.steps, r.solver, r.cfg_scale)
    if a.name == "vgrpo":
        # the first minibatch reuses its own surrogate as the behaviour one: no scoring forward for it
        scored = 1.0 - 1.0 / a.minibatches if a.reuse_first_surrogate else 1.0
        old, update = a.num_pairs * scored, float(a.mu * a.num_pairs)
    else:  # MDP baseline: PPO over the trained SDE steps (0 = all); theta_old's log-probs come from sampling
        trained = a.sde_train_steps or r.steps
        update = float(a.mu * trained) * (2 if r.cfg_scale != 1.0 else 1)
        old = update if a.beta > 0 else 0.0  # the reference model's forwards for the KL
    images = r.prompts_per_iteration * r.group_size
    per_iteration = images * (rollout * SAMPLING_S_PER_NFE + old * SCORING_S_PER_NFE
                              + update * TRAINING_S_PER_NFE + REWARD_S_PER_IMAGE)
    from vgrpo.world.prompts import heldout_prompts_by_category

    eval_images = cfg.eval.images_per_category * len(heldout_prompts_by_category())
    evaluation = sampler_nfe(e.steps or r.steps, e.solver or r.solver, r.cfg_scale)
    per_eval = eval_images * (evaluation * SAMPLING_S_PER_NFE + REWARD_S_PER_IMAGE)
    seconds = RUN_STARTUP_S + cfg.job.iterations * per_iteration + evaluation_count(cfg) * per_eval
    return RunEstimate(rollout, old, update, seconds)
