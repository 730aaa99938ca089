"""The training loop: `Trainer.train()` runs iterations, `train_step()` is one iteration.

One iteration (method.md sections 5 and 8), with the method's own parts in a strategy object
(`vgrpo.algorithms`: V-GRPO or the Flow-GRPO baseline, `algorithm.name`):
  1. prompts (seeded by iteration), G images each (`Algorithm.rollout`: ODE for V-GRPO, SDE with
     stored steps and log-probs for Flow-GRPO);
  2. rewards (failures isolated, invalid samples get advantage 0) and group advantages;
  3. `Algorithm.prepare`: V-GRPO draws its shared pairs and scores the behaviour policy over the
     update's own chunks; Flow-GRPO picks the iteration's trained steps;
  4. mu passes of `minibatches` optimizer steps, gradient accumulation over micro chunks, each
     chunk's loss from `Algorithm.chunk_loss`.
A step whose gradient norm is NaN/inf is skipped and counted; parameters, and therefore
checkpoints, never see it. An iteration without valid rewards or with zero variance in every group
makes no update; `job.max_skipped_iterations` such iterations in a row stop the run
(`vgrpo.trainer.stall`). Metrics stay on the device until one packed reduction per iteration;
the update's are the algorithm's own (`Algorithm.metric_reductions` says how each is reduced)
plus the loop's grad_norm and skipped_steps.
Every train record carries the iteration's cost in forward evaluations per image: nfe_rollout,
nfe_old (behaviour / reference forwards) and nfe_update (forwards of theta).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch.distributed.tensor import DTensor

from vgrpo.algorithms import build_algorithm
from vgrpo.models.base import ModelAdapter
from vgrpo.objective import group_advantages
from vgrpo.rewards.base import RewardSet
from vgrpo.trainer.checkpoint import Checkpointer, parameters_finite
from vgrpo.trainer.config import Config, validate
from vgrpo.utils.distributed import (
    STREAM_PROMPTS,
    World,
    all_reduce_mean,
    barrier,
    generator,
    init_distributed,
)
from vgrpo.trainer.ema import EMA
from vgrpo.trainer.evaluation import build_evaluator, evaluate, plot_reward_curve
from vgrpo.trainer.lr_schedule import lr_multiplier
from vgrpo.trainer.metrics import MetricsLogger, gpu_stats, read_metrics, reduce_metrics
from vgrpo.trainer.parallelize import apply_finetune_mode, apply_speed_switches, parallelize
from vgrpo.trainer.reward_overlap import ChunkScorer
from vgrpo.sampling.rollout import RolloutBatch, local_prompt_indices
from vgrpo.tasks.registry import BUILT_IN_TRAINING_PROMPTS
from vgrpo.trainer.run_folder import RunFolder, RunFolderError, fingerprint
from vgrpo.trainer.stall import NO_VALID_REWARDS, NON_FINITE_LOSS, ZERO_VARIANCE, SkipStreak
from vgrpo.utils.prompt_file import read_prompt_file, read_prompt_records

log = logging.getLogger(__name__)

# The update's metrics the loop itself reports (never an algorithm's name), and their reductions.
UPDATE_METRICS = {"grad_norm": "mean", "skipped_steps": "mean"}


def build_adapter(cfg: Config, device: torch.device) -> ModelAdapter:
    """The model adapter named by `cfg.model` (weights loaded or seeded random).

    Every family goes through `vgrpo.models.registry`; flux / sd3 check the directory and the memory
    need (sharded over the process group, LoRA or full fine-tuning) before loading.
    """
    from vgrpo.models.registry import build_adapter as build_from_registry
    from vgrpo.models.registry import family

    m = cfg.model
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[m.dtype]
    entry = family(m.name)
    if m.init == "random":
        return entry.random(cfg.job.seed).to(device, dtype)
    if not entry.takes_options:
        return build_from_registry(m.name, m.path, device=device, dtype=dtype)
    shards = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    return build_from_registry(
        m.name, m.path, device=device, dtype=dtype, resolution=m.resolution, guidance=m.guidance,
        max_sequence_length=m.max_sequence_length, use_t5=m.use_t5, offload=m.offload,
        finetune=cfg.finetune.mode, shards=shards,
    )


def training_prompts(cfg: Config) -> dict[str, list[str]]:
    """Training prompts by category: the model family's built-in ones (the shapes world's training split),
    or {"file": lines of rollout.prompt_file}."""
    if cfg.rollout.prompt_file is None:
        return BUILT_IN_TRAINING_PROMPTS[cfg.model.name]()
    return {"file": read_prompt_file(cfg.rollout.prompt_file)}


def training_metadata(cfg: Config) -> dict[str, dict] | None:
    """{prompt: metadata} of a JSONL `rollout.prompt_file` (None when no prompt carries metadata)."""
    if cfg.rollout.prompt_file is None:
        return None
    records = read_prompt_records(cfg.rollout.prompt_file)
    return {r.prompt: r.metadata for r in records} if any(r.metadata for r in records) else None


def build_rewards(cfg: Config, device: torch.device | str = "cpu") -> RewardSet:
    """The RewardSet named by `cfg.reward` (built through the reward registry)."""
    from vgrpo.rewards.registry import JUDGE_REWARDS, RewardSpec, build_reward_set

    w = cfg.reward
    paths = [None if p in ("", "none") else p for p in w.paths] or [None] * len(w.names)
    weights = list(w.weights) or [1.0] * len(w.names)
    judge = dataclasses.asdict(w.judge)  # the options of the HTTP judge rewards
    return build_reward_set(
        [RewardSpec(n, weight=wt, path=p, options=dict(judge) if n in JUDGE_REWARDS else {})
         for n, wt, p in zip(w.names, weights, paths)], device=device
    )


class Trainer:
    """Owns the model, optimizer, rewards, strategy, checkpoints and logs of one run.

    `adapter_factory(cfg, device)` and `reward_factory(cfg, device)` replace the built-in model and reward
    construction (used by tests and by model plug-ins outside the registry).
    """

    def __init__(
        self,
        cfg: Config,
        *,
        adapter_factory: Callable[[Config, torch.device], ModelAdapter] | None = None,
        reward_factory: Callable[[Config, torch.device], RewardSet] | None = None,
    ):
        self.world: World = init_distributed(cfg.job.device, cfg.parallel.backend, cfg.parallel.timeout_s)
        validate(cfg, self.world.world_size)
        self.algorithm = build_algorithm(cfg.algorithm)  # its declared metrics are checked here, before any load
        taken = sorted(set(self.algorithm.metric_reductions) & set(UPDATE_METRICS))
        if taken:
            raise ValueError(f"algorithm {cfg.algorithm.name!r} declares metric {taken[0]!r}, a name the loop "
                             f"reports itself ({sorted(UPDATE_METRICS)})")
        self.cfg = cfg
        self.run_dir = cfg.run_dir()
        self.checkpointer = Checkpointer(self.run_dir / "checkpoints", self.world, cfg.checkpoint.keep_last)
        self.run_folder = RunFolder(cfg, self.world, self.checkpointer)  # the lock; checks before the model loads
        if self.world.is_main:
            cfg.save(self.run_dir / "config.json")
        barrier()
        torch.manual_seed(cfg.job.seed)  # same LoRA init on every rank and world size
        self.adapter = (adapter_factory or build_adapter)(cfg, self.world.device)
        apply_speed_switches(self.adapter.denoiser, cfg.parallel, self.world.device)
        apply_finetune_mode(self.adapter.denoiser, cfg.finetune)
        self.fsdp = parallelize(self.adapter, cfg.parallel, self.world)
        self.params = [p for p in self.adapter.denoiser.parameters() if p.requires_grad]
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(
            self.params, lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=o.weight_decay
        )
        self.ema = EMA(self.adapter.denoiser, o.ema_decay) if o.ema_decay else None  # optim.ema_decay
        total_steps = cfg.job.iterations * cfg.algorithm.mu * cfg.algorithm.minibatches
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            partial(
                lr_multiplier, total_steps=total_steps, warmup_steps=o.warmup_steps,
                schedule=o.schedule, final_ratio=o.final_lr_ratio,
            ),
        )
        self.rewards = (reward_factory or build_rewards)(cfg, self.world.device)
        overlap = cfg.reward.overlap
        self.reward_overlap = overlap == "on" or (overlap == "auto" and self.world.device.type == "cuda")
        lg = cfg.logging
        wandb = dict(config=cfg.to_dict(), project=lg.wandb_project, name=lg.wandb_run_name,
                     mode=lg.wandb_mode) if lg.wandb else None
        self.logger = MetricsLogger(self.run_dir, enabled=self.world.is_main, tensorboard=lg.tensorboard, wandb=wandb)
        self.train_by_category = training_prompts(cfg)
        self.train_prompts = [p for ps in self.train_by_category.values() for p in ps]
        self.prompt_metadata = training_metadata(cfg)
        self.evaluator = build_evaluator(cfg, self.rewards, self.world.device) if cfg.eval.every >= 0 else None
        self.iteration = 0
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.skip_cause: str | None = None  # why the last iteration made no update (None: it did)

    # ------------------------------------------------------------------ prompts
    def iteration_prompts(self, iteration: int) -> list[str]:
        """The iteration's P global prompts (a function of seed and iteration only)."""
        r, g = self.cfg.rollout, generator(self.cfg.job.seed, STREAM_PROMPTS, iteration)
        if r.prompt_sampling == "uniform":
            n = len(self.train_prompts)
            order = torch.cat([torch.randperm(n, generator=g) for _ in range(math.ceil(r.prompts_per_iteration / n))])
            return [self.train_prompts[i] for i in order[: r.prompts_per_iteration].tolist()]
        cats = list(self.train_by_category.values())
        out = []
        for _ in range(r.prompts_per_iteration):
            ps = cats[int(torch.randint(len(cats), (1,), generator=g))]
            out.append(ps[int(torch.randint(len(ps), (1,), generator=g))])
        return out

    # ------------------------------------------------------------------ one iteration
    def train_step(self, iteration: int) -> dict[str, float]:
        """Run one iteration; returns globally reduced metrics (floats)."""
        cfg, r, a, world = self.cfg, self.cfg.rollout, self.cfg.algorithm, self.world
        device, g = world.device, r.group_size
        t0 = time.perf_counter()

        prompts = self.iteration_prompts(iteration)
        mine = local_prompt_indices(len(prompts), world.world_size, world.rank, a.minibatches)
        local_prompts = [prompts[i] for i in mine]
        md = self.prompt_metadata
        scorer = ChunkScorer(
            self.adapter.decode, self.rewards, [p for p in local_prompts for _ in range(g)],
            overlap=self.reward_overlap, metadata=None if md is None else [md[p] for p in local_prompts for _ in range(g)],
        )
        batch = self.algorithm.rollout(
            self.adapter, local_prompts, mine, iteration=iteration, seed=cfg.job.seed, rollout=r, on_chunk=scorer
        )
        t_rollout = time.perf_counter()

        scores = scorer.result()  # rewards of the earlier chunks were computed during the rollout
        weights = self.rewards.weights
        adv = group_advantages(
            scores.scores, g, weights=weights, valid=scores.valid, std_eps=cfg.reward.std_eps,
            soft_clip_eta=cfg.reward.soft_clip_eta or None,
        ).to(device)
        # Logged statistics in float64 over valid samples only: a reward of 1e38 squares to 1e76, not inf.
        per_reward = torch.where(scores.valid[:, None], scores.scores.double(), 0.0)
        total = per_reward @ torch.tensor(weights, dtype=torch.float64)
        valid = scores.valid.double()
        reward_sums = torch.cat([
            torch.stack([total.sum(), total.square().sum(), valid.sum(), torch.tensor(float(valid.numel())),
                         (adv != 0).sum().double().cpu()]),
            per_reward.sum(0),
        ])
        reward_sums = all_reduce_mean(reward_sums) * world.world_size
        t_reward = time.perf_counter()

        # no update without a learning signal (the same decision on every rank: reduced numbers)
        self.skip_cause = NO_VALID_REWARDS if float(reward_sums[2]) == 0.0 else (
            ZERO_VARIANCE if float(reward_sums[4]) == 0.0 else None)
        if self.skip_cause is not None:
            log.warning("iteration %d: %s; skipping its update", iteration, self.skip_cause)
            update_metrics = self.algorithm.nfe(r, a.mu, None)
        else:
            steps_before = self.step
            update_metrics = self._update(batch, adv, iteration)
            if self.step == steps_before:  # every optimizer step met a non-finite gradient norm
                self.skip_cause = NON_FINITE_LOSS
        skipped_iteration = float(self.skip_cause is not None)
        t_update = time.perf_counter()

        s_sum, s_sq, n_valid, n_all = (float(v) for v in reward_sums[:4])
        mean = s_sum / max(n_valid, 1.0)
        out = {
            "reward_mean": mean,
            "reward_std": math.sqrt(max(s_sq / max(n_valid, 1.0) - mean * mean, 0.0)),
            "valid_fraction": n_valid / n_all,
            "skipped_iteration": skipped_iteration,
            **{f"reward/{n}": float(v) / max(n_valid, 1.0) for n, v in zip(scores.names, reward_sums[5:])},
            **update_metrics,
            "lr": self.scheduler.get_last_lr()[0],
            "optimizer_steps": self.step,
            "time_rollout_s": t_rollout - t0,
            "time_reward_s": t_reward - t_rollout,
            "time_update_s": t_update - t_reward,
            "rollout_images_per_s": len(prompts) * g / max(t_rollout - t0, 1e-9),
            "update_samples_per_s": len(prompts) * g * a.mu / max(t_update - t_reward, 1e-9),
            **gpu_stats(device),
        }
        return out

    def _update(self, batch: RolloutBatch, adv: torch.Tensor, iteration: int) -> dict[str, float]:
        """The strategy's preparation (behaviour scoring, ...), then mu x minibatches optimizer steps.

        adv: [Bl] advantages of this rank's samples. Returns reduced metrics with nfe_* per image.
        """
        a, algo, adapter = self.cfg.algorithm, self.algorithm, self.adapter
        bl = batch.size
        local_mb = bl // a.minibatches
        micro = a.micro_batch or local_mb
        mb_chunks = [
            [slice(s, s + micro) for s in range(m * local_mb, (m + 1) * local_mb, micro)]
            for m in range(a.minibatches)
        ]
        all_chunks = [c for cs in mb_chunks for c in cs]
        reuse = a.reuse_first_surrogate
        t0 = time.perf_counter()
        state = algo.prepare(
            adapter, batch, seed=self.cfg.job.seed, iteration=iteration, chunks=all_chunks,
            reuse=mb_chunks[0] if reuse else [],
        )
        t_score = time.perf_counter() - t0

        values: dict[str, list[torch.Tensor]] = {}  # the algorithm's metrics, per chunk
        grad_norms, skipped = [], 0
        max_norm = self.cfg.optim.max_grad_norm or float("inf")
        for epoch in range(a.mu):
            for m, chunks in enumerate(mb_chunks):
                first = epoch == 0 and m == 0
                self.optimizer.zero_grad(set_to_none=True)
                for ci, sl in enumerate(chunks):
                    if self.fsdp:
                        adapter.denoiser.set_requires_gradient_sync(ci == len(chunks) - 1)
                    out = algo.chunk_loss(
                        adapter, batch, adv, state, sl, take_old_from_self=first and reuse, epoch=epoch, minibatch=m
                    )
                    (out.loss * ((sl.stop - sl.start) / local_mb)).backward()
                    for k, v in out.metrics.items():
                        values.setdefault(k, []).append(v)
                norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
                if isinstance(norm, DTensor):
                    norm = norm.full_tensor()
                if bool(torch.isfinite(norm)):  # one sync per optimizer step
                    self.optimizer.step()
                    self.scheduler.step()
                    self.step += 1
                    if self.ema is not None:
                        self.ema.update(adapter.denoiser)
                    grad_norms.append(norm.detach())
                else:
                    log.warning("non-finite gradient norm (%s); optimizer step skipped", float(norm))
                    self.optimizer.zero_grad(set_to_none=True)
                    skipped += 1
        for k, v in algo.iteration_metrics(batch, state).items():
            values.setdefault(k, []).append(v)
        undeclared = sorted(set(values) - set(algo.metric_reductions))
        if undeclared:
            raise ValueError(f"algorithm {algo.name!r} reported metrics {undeclared} that its metric_reductions "
                             f"does not declare (it declares {sorted(algo.metric_reductions)})")
        # the loop's own: mean gradient norm of the applied steps, skipped steps summed over ranks
        if grad_norms:
            values["grad_norm"] = [torch.stack(grad_norms).float().mean()]
        values["skipped_steps"] = [torch.tensor(float(skipped))]
        out = reduce_metrics(values, {**algo.metric_reductions, **UPDATE_METRICS}, self.world.distributed,
                             self.world.device)
        out["skipped_steps"] = out["skipped_steps"] * self.world.world_size
        # nfe_*: the same on every rank (equal shares, same chunk layout), so not reduced.
        return {**out, "time_score_s": t_score, **algo.nfe(self.cfg.rollout, a.mu, state)}

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, iteration: int) -> dict[str, float]:
        """The run's evaluator (`build_evaluator`: a prompt file with rewards, or the shapes world's
        held-out verifier) on fixed-noise images of the deterministic ODE sampler (`eval.steps`,
        `eval.solver`, defaulting to the rollout's), with the EMA weights when `eval.use_ema`; metrics
        logged and saved to eval/iter-XXXXXX.json, the captioned sample grid to samples/ and the logs."""
        if self.evaluator is None:
            return {}
        cfg, r, e = self.cfg, self.cfg.rollout, self.cfg.eval
        t0 = time.perf_counter()
        with self._evaluation_weights():
            metrics, grid = evaluate(
                self.adapter, self.evaluator, self.world, seed=cfg.job.seed, steps=e.steps or r.steps,
                solver=e.solver or r.solver, shift=r.shift, cfg_scale=r.cfg_scale, batch_size=r.batch_size,
                grid_images=e.grid_images,
            )
        if self.world.is_main:
            metrics["time_eval_s"] = time.perf_counter() - t0
            self.logger.log(iteration, "eval", metrics)
            (self.run_dir / "eval").mkdir(exist_ok=True)
            (self.run_dir / "eval" / f"iter-{iteration:06d}.json").write_text(json.dumps(metrics, indent=2) + "\n")
            if grid is not None:
                (self.run_dir / "samples").mkdir(exist_ok=True)
                grid.save(self.run_dir / "samples" / f"iter-{iteration:06d}.png")
                self.logger.log_image(iteration, "eval/samples", grid)
        return metrics

    def _evaluation_weights(self) -> contextlib.AbstractContextManager:
        """With `eval.use_ema`, the EMA of the trainable parameters swapped in (`self.ema`, kept when
        optim.ema_decay > 0; its `averaged(model)` restores the trained values on exit)."""
        if not self.cfg.eval.use_ema:
            return contextlib.nullcontext()
        ema = self.ema
        if ema is None:
            raise RuntimeError("eval.use_ema=true, but this run keeps no EMA (set optim.ema_decay)")
        return ema.averaged(self.adapter.denoiser)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path | None:
        state = {"iteration": self.iteration, "step": self.step, "scheduler": self.scheduler.state_dict()}
        config = self.cfg.to_dict()
        return self.checkpointer.save(
            self.iteration, self.adapter.denoiser, self.optimizer, state, config, fingerprint(config), ema=self.ema
        )

    def maybe_resume(self) -> None:
        """Restore the checkpoint the run folder chose (`checkpoint.resume`; "auto": the newest that
        passes its check); one whose parameters are not finite is skipped for the one before it."""
        self.checkpointer.remove_partial()
        path = self.run_folder.resume_from
        if path is None:
            if self.world.is_main and self.logger.path.exists():
                self.logger.path.unlink()  # a fresh run starts a fresh log
            return
        while True:
            state = self.checkpointer.load(path, self.adapter.denoiser, self.optimizer, ema=self.ema)
            if parameters_finite(self.adapter.denoiser):
                break
            log.warning("skipping checkpoint %s: its parameters are not finite", path)
            bad, path = path, self.run_folder.fallback(path)
            if path is None:
                raise RunFolderError(f"checkpoint {bad} holds non-finite parameters and no earlier checkpoint passes")
        self.iteration, self.step = int(state["iteration"]), int(state["step"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._apply_optim_settings()
        self.logger.truncate_from(self.iteration)
        changes = self.run_folder.allowed_changes(path)
        if changes:
            self.logger.log(self.iteration, "config_change", {"checkpoint": str(path), "changes": changes})
        log.info("resumed from %s at iteration %d", path, self.iteration)

    def _apply_optim_settings(self) -> None:
        """Make the config's optimizer settings current after a checkpoint restored the saved ones
        (they differ only where `checkpoint.allow_changes` let them); same bits when unchanged."""
        o, groups = self.cfg.optim, self.optimizer.param_groups
        for group in groups:
            group.update(initial_lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps, weight_decay=o.weight_decay)
        sched = self.scheduler
        sched.base_lrs = [o.lr] * len(groups)
        for group, fn in zip(groups, sched.lr_lambdas):
            group["lr"] = o.lr * fn(sched.last_epoch)  # as LambdaLR computes it
        sched._last_lr = [group["lr"] for group in groups]

    # ------------------------------------------------------------------ the loop
    def _due(self, every: int, iteration: int) -> bool:
        last = iteration == self.cfg.job.iterations
        return every >= 0 and (last or (every > 0 and iteration % every == 0))

    def train(self) -> dict[str, Any]:
        """Run (or resume) the configured iterations; returns a summary (rank 0). The run folder's
        lock is released at the end, also when the run fails."""
        try:
            return self._train()
        finally:
            self.run_folder.release()

    def _train(self) -> dict[str, Any]:
        cfg = self.cfg
        self.maybe_resume()
        t_start = time.perf_counter()
        streak = SkipStreak(cfg.job.max_skipped_iterations)
        if self.iteration == 0 and cfg.eval.every >= 0:
            self.evaluate(0)
        bar = None
        if self.world.is_main and cfg.logging.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.job.iterations, initial=self.iteration, desc=cfg.algorithm.name, dynamic_ncols=True)
        while self.iteration < cfg.job.iterations:
            metrics = self.train_step(self.iteration)
            self.logger.log(self.iteration, "train", metrics)
            self.history.append(metrics)
            streak.record(self.iteration, self.skip_cause)
            self.iteration += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", **self.algorithm.progress(metrics))
            if self._due(cfg.eval.every, self.iteration):
                ev = self.evaluate(self.iteration)
                if bar is not None and ev:
                    shown = ", ".join(f"{k} {ev[k]:.3f}" for k in self.evaluator.headline if k in ev)
                    bar.write(f"iteration {self.iteration}: eval {shown}")
            if self._due(cfg.checkpoint.every, self.iteration):
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        summary: dict[str, Any] = {"wall_time_s": time.perf_counter() - t_start, "iterations": self.iteration}
        if self.world.is_main:
            records = read_metrics(self.logger.path)
            plot_reward_curve(records, self.run_dir / "reward_curve.png")
            evals = [r for r in records if r["kind"] == "eval"]
            if evals:
                summary["eval_first"], summary["eval_last"] = evals[0], evals[-1]
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.logger.close()
        return summary
