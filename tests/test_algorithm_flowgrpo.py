"""Flow-GRPO, the MDP baseline, as the trainer's second algorithm: exact first ratio and KL, stored
log-probs against an independent computation, the per-iteration step subset, an end-to-end run
through the entry point, and config errors that name the field."""

from __future__ import annotations

import math

import pytest
import torch

from tests.trainer_setups import color_rewards, tiny_adapter, tiny_config
from vgrpo.algorithms.flowgrpo import FlowGRPO, trained_steps
from vgrpo.algorithms.reference_model import lora_disabled
from vgrpo.trainer.config import ConfigError, apply_overrides, validate
from vgrpo.trainer.metrics import read_metrics
from vgrpo.trainer.parallelize import apply_finetune_mode

PROMPTS = ["a red circle", "two blue squares"]


def flowgrpo_config(tmp_path, **algorithm):
    return tiny_config(
        tmp_path, algorithm=dict(name="flowgrpo", clip_range=1e-4, **algorithm), rollout=dict(steps=4)
    )


def lora_adapter(cfg):
    """The tiny random shapes model with LoRA adapters as the trainer injects them (B = 0)."""
    adapter = tiny_adapter(cfg, torch.device("cpu"))
    apply_finetune_mode(adapter.denoiser, cfg.finetune)
    return adapter


def sde_batch(cfg, adapter, algo, iteration=0):
    return algo.rollout(adapter, PROMPTS, [0, 1], iteration=iteration, seed=cfg.job.seed, rollout=cfg.rollout)


# ----------------------------------------------------------------------------- (a) exact start


def test_ratio_is_exactly_one_and_kl_exactly_zero_before_the_first_update(tmp_path):
    cfg = flowgrpo_config(tmp_path, beta=0.5)
    adapter = lora_adapter(cfg)
    algo = FlowGRPO(cfg.algorithm)
    batch = sde_batch(cfg, adapter, algo)
    state = algo.prepare(adapter, batch, seed=0, iteration=0, chunks=[slice(0, 8)], reuse=[slice(0, 8)])
    adv = torch.randn(batch.size, generator=torch.Generator().manual_seed(0))
    trainable = [p for p in adapter.denoiser.parameters() if p.requires_grad]
    out = algo.policy_loss(adapter, batch, adv, state, slice(0, 8), take_old_from_self=True)
    assert out.ratio.shape == (batch.size * batch.steps,)
    assert torch.equal(out.ratio, torch.ones_like(out.ratio))  # bit for bit
    assert out.metrics["kl"].item() == 0.0  # LoRA B = 0: theta is the reference model
    assert out.metrics["clip_fraction"].item() == 0.0
    torch.testing.assert_close(out.loss, -adv.mean())
    out.loss.backward()
    assert all(p.grad is not None for p in trainable)
    # the reference forward left the trainable set as it was
    assert [p for p in adapter.denoiser.parameters() if p.requires_grad] == trainable


def test_stored_log_probs_are_the_rollout_policys_own(tmp_path):
    # Without the reuse, the update's first ratio compares theta's re-evaluated log-probs with the
    # stored ones: 1 up to the batching of the rollout's and the update's forwards.
    cfg = flowgrpo_config(tmp_path)
    adapter = lora_adapter(cfg)
    algo = FlowGRPO(cfg.algorithm)
    batch = sde_batch(cfg, adapter, algo)
    state = algo.prepare(adapter, batch, seed=0, iteration=0, chunks=[slice(0, 8)], reuse=[])
    out = algo.policy_loss(adapter, batch, torch.ones(batch.size), state, slice(0, 8), take_old_from_self=False)
    assert (out.ratio - 1.0).abs().max().item() < 1e-5


def test_lora_disabled_is_the_base_model_and_needs_lora(tmp_path):
    cfg = flowgrpo_config(tmp_path)
    adapter = lora_adapter(cfg)
    z, t = torch.randn(2, *adapter.latent_shape), torch.full((2,), 0.5)
    cond = adapter.encode_prompts(PROMPTS)
    with torch.no_grad():
        base = adapter.velocity(z, t, cond)
        for name, p in adapter.denoiser.named_parameters():
            if "lora_B" in name:
                p.add_(0.1)
        moved = adapter.velocity(z, t, cond)
        with lora_disabled(adapter.denoiser):
            reference = adapter.velocity(z, t, cond)
    assert not torch.equal(moved, base)
    assert torch.equal(reference, base)
    with pytest.raises(ValueError, match="finetune.mode must be lora"):
        with lora_disabled(tiny_adapter(cfg, torch.device("cpu")).denoiser):
            pass


# ----------------------------------------------------------------------------- (b) stored log-probs


def test_stored_log_probs_match_an_independent_float64_computation(tmp_path):
    cfg = flowgrpo_config(tmp_path)
    cfg.rollout.shift = 3.0
    cfg.rollout.cfg_scale = 2.0
    adapter = tiny_adapter(cfg, torch.device("cpu"))
    algo = FlowGRPO(cfg.algorithm)
    batch = sde_batch(cfg, adapter, algo)
    steps, a = batch.steps, cfg.algorithm.sde_noise_level
    assert batch.latents.shape == (8, steps + 1, *adapter.latent_shape)
    assert batch.log_probs.shape == (8, steps)
    assert torch.equal(batch.latents[:, -1], batch.x0)
    u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    grid = 3.0 * u / (1.0 + 2.0 * u)  # the shifted schedule t' = s t / (1 + (s - 1) t)
    null = adapter.null_conditioning(batch.size)
    for j in range(steps):
        t, t_next = float(grid[j]), float(grid[j + 1])
        x = batch.latents[:, j]
        with torch.no_grad():
            tt = torch.full((batch.size,), t)
            v_cond = adapter.velocity(x, tt, batch.cond).double()
            v_null = adapter.velocity(x, tt, null).double()
        v = v_null + 2.0 * (v_cond - v_null)
        x = x.double()
        sigma = a * math.sqrt(t / (1.0 - (float(grid[1]) if j == 0 else t)))
        dt = t_next - t
        mean = x + (v + sigma**2 / (2 * t) * (x + (1 - t) * v)) * dt
        dist = torch.distributions.Normal(mean, sigma * math.sqrt(-dt))
        expected = dist.log_prob(batch.latents[:, j + 1].double()).flatten(1).mean(1)
        torch.testing.assert_close(batch.log_probs[:, j].double(), expected, rtol=0, atol=1e-4)


def test_trajectories_do_not_depend_on_the_rollout_batching(tmp_path):
    cfg = flowgrpo_config(tmp_path)
    adapter = tiny_adapter(cfg, torch.device("cpu"))
    algo = FlowGRPO(cfg.algorithm)
    whole = sde_batch(cfg, adapter, algo)
    # the second prompt alone, as a second rank would generate it, in batches of 3
    cfg.rollout.batch_size = 3
    alone = algo.rollout(adapter, PROMPTS[1:], [1], iteration=0, seed=0, rollout=cfg.rollout)
    torch.testing.assert_close(alone.latents, whole.latents[4:], rtol=0, atol=1e-5)
    torch.testing.assert_close(alone.log_probs, whole.log_probs[4:], rtol=0, atol=1e-5)
    # the initial noise is the ODE rollout's
    from vgrpo.sampling.rollout import rollout as ode_rollout

    ode = ode_rollout(adapter, PROMPTS, [0, 1], iteration=0, seed=0, group_size=4, steps=1, solver="euler", shift=1.0)
    with torch.no_grad():
        v = adapter.velocity(whole.latents[:, 0], torch.ones(8), whole.cond)
    torch.testing.assert_close(ode.x0, whole.latents[:, 0] - v.float(), rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- (c) trained steps


def test_trained_steps_are_a_function_of_seed_and_iteration():
    picks = [trained_steps(seed=0, iteration=i, steps=10, count=3) for i in range(20)]
    for i, s in enumerate(picks):
        assert s.shape == (3,) and s.unique().numel() == 3
        assert bool((s >= 0).all() and (s < 10).all()) and torch.equal(s, s.sort().values)
        assert torch.equal(s, trained_steps(seed=0, iteration=i, steps=10, count=3))  # any rank, any time
    assert len({tuple(s.tolist()) for s in picks}) > 5  # a fresh subset per iteration
    assert len({tuple(trained_steps(seed, 0, 10, 3).tolist()) for seed in range(10)}) > 1  # and per seed
    assert torch.equal(trained_steps(0, 5, 10, 0), torch.arange(10))  # 0 = all
    assert torch.equal(trained_steps(0, 5, 10, 10), torch.arange(10))
    with pytest.raises(ValueError, match="count must be in"):
        trained_steps(0, 0, 4, 5)


def test_prepare_takes_the_subset_and_its_stored_log_probs(tmp_path):
    cfg = flowgrpo_config(tmp_path, sde_train_steps=2)
    adapter = tiny_adapter(cfg, torch.device("cpu"))
    algo = FlowGRPO(cfg.algorithm)
    batch = sde_batch(cfg, adapter, algo, iteration=3)
    state = algo.prepare(adapter, batch, seed=0, iteration=3, chunks=[slice(0, 8)], reuse=[])
    assert torch.equal(state.steps, trained_steps(0, 3, 4, 2))
    assert torch.equal(state.log_probs_old, batch.log_probs[:, state.steps])
    # a second rank, holding only the second prompt's group, trains the same steps
    second = algo.rollout(adapter, PROMPTS[1:], [1], iteration=3, seed=0, rollout=cfg.rollout)
    assert torch.equal(algo.prepare(adapter, second, seed=0, iteration=3, chunks=[], reuse=[]).steps, state.steps)
    assert algo.nfe(cfg.rollout, cfg.algorithm.mu, state) == {"nfe_rollout": 4.0, "nfe_old": 0.0, "nfe_update": 4.0}


# ----------------------------------------------------------------------------- (d) end to end


def test_flowgrpo_run_through_the_entry_point(tmp_path, monkeypatch):
    import vgrpo.trainer.trainer as trainer_module
    from vgrpo import train

    monkeypatch.setattr(trainer_module, "build_adapter", tiny_adapter)
    monkeypatch.setattr(trainer_module, "build_rewards", color_rewards)
    snapshots = []
    real_update = trainer_module.Trainer._update

    def update(self, *args, **kwargs):
        snapshots.append([p.detach().clone() for p in self.params])
        return real_update(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "_update", update)
    argv = [
        "--algorithm.name=flowgrpo", f"--job.output_dir={tmp_path}", "--job.name=fg", "--job.iterations=3",
        "--job.device=cpu", "--model.init=random", "--rollout.prompts_per_iteration=2", "--rollout.group_size=4",
        "--rollout.steps=4", "--algorithm.sde_train_steps=2", "--algorithm.clip_range=1e-4", "--algorithm.mu=2",
        "--algorithm.minibatches=2", "--algorithm.beta=0.1", "--optim.lr=1e-3", "--eval.every=-1",
        "--checkpoint.every=-1", "--logging.tensorboard=false", "--logging.progress=false",
    ]
    assert train.main(argv) == 0
    rows = read_metrics(tmp_path / "fg" / "metrics.jsonl", "train")
    assert len(rows) == 3
    for row in rows:
        assert row["ratio_first_absdev"] == 0.0
        assert row["nfe_rollout"] == 4.0
        assert row["nfe_update"] == 2 * 2  # mu x trained steps
        assert row["nfe_old"] == 2 * 2  # the reference model's forwards (beta > 0)
        for k in ("policy_loss", "kl", "clip_fraction", "log_ratio_std", "ratio_mean", "grad_norm"):
            assert math.isfinite(row[k]), k
        assert row["skipped_steps"] == 0
    assert rows[-1]["optimizer_steps"] == 3 * 2 * 2
    assert rows[-1]["kl"] > 0.0  # theta moved away from the base model
    # the first update changed the LoRA weights (B starts at 0)
    assert any(not torch.equal(a, b) for a, b in zip(snapshots[0], snapshots[1]))


def test_vgrpo_records_carry_nfe(tmp_path):
    from tests.trainer_setups import run

    cfg = tiny_config(tmp_path, algorithm=dict(minibatches=2, mu=2, num_pairs=3), rollout=dict(steps=3, solver="heun"))
    row = read_metrics(run(cfg).run_dir / "metrics.jsonl", "train")[0]
    assert row["nfe_rollout"] == 5.0  # Heun: 2 x steps - 1
    assert row["nfe_old"] == 3 * 0.5  # N_MC on the second minibatch only (the first reuses its own)
    assert row["nfe_update"] == 2 * 3  # mu x N_MC


# ----------------------------------------------------------------------------- (e) config errors


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--algorithm.name=dancegrpo"], "algorithm.name must be vgrpo|flowgrpo, got 'dancegrpo'"),
        (["--algorithm.name=flowgrpo", "--rollout.steps=4", "--algorithm.sde_train_steps=5"],
         r"algorithm.sde_train_steps \(5\) must be <= rollout.steps \(4\)"),
        (["--algorithm.name=flowgrpo", "--algorithm.beta=0.1", "--finetune.mode=full"],
         "algorithm.beta=0.1 with algorithm.name=flowgrpo needs finetune.mode=lora"),
        (["--algorithm.sde_noise_level=0"], "algorithm.sde_noise_level must be > 0"),
    ],
)
def test_config_errors_name_the_field(overrides, message):
    from vgrpo.trainer.config import Config

    with pytest.raises(ConfigError, match=message):
        validate(apply_overrides(Config(), overrides))


def test_flowgrpo_fields_do_not_constrain_vgrpo_and_preset_validates():
    from vgrpo.trainer.config import Config
    from vgrpo.trainer.presets import load_config

    validate(apply_overrides(Config(), ["--rollout.steps=4", "--algorithm.sde_train_steps=8", "--algorithm.beta=0.1",
                                        "--finetune.mode=full"]))
    cfg = load_config("shapes-cpu-flowgrpo")
    validate(cfg)
    a = cfg.algorithm
    assert (a.name, cfg.rollout.steps, a.clip_range, a.beta) == ("flowgrpo", 10, 1e-4, 0.0)
    base = load_config("shapes-cpu")
    for section in ("rollout", "finetune", "optim"):
        for key, value in vars(getattr(base, section)).items():
            if (section, key) != ("rollout", "steps"):
                assert getattr(getattr(cfg, section), key) == value, (section, key)
    assert cfg.job.iterations == base.job.iterations
