"""Classifier-free guidance has one implementation (`vgrpo.sampling.guidance`); both rollouts, the
Flow-GRPO update and the shapes sample path use it, and their results are, bit for bit, those of a
plain computation of v_u + s (v_c - v_u) written out here."""

from __future__ import annotations

import pytest
import torch

from vgrpo.models.base import Conditioning
from vgrpo.models.shapes import ShapesAdapter
from vgrpo.sampling.guidance import forwards_per_velocity, guided_velocity
from vgrpo.sampling.ode import sample
from vgrpo.sampling.rollout import group_inputs, rollout
from vgrpo.sampling.sde import sample_sde
from vgrpo.sampling.sde_rollout import sde_rollout, step_noise

PROMPTS = ["a red circle", "a blue square left of a green triangle", "two yellow circles"]
SCALE = 2.5
G, SEED, ITERATION = 2, 3, 1


@pytest.fixture(scope="module")
def adapter():
    return ShapesAdapter.random(seed=0, num_layers=1)


def _reference_velocity(adapter, cond: Conditioning, scale: float, batched: bool):
    """The guided velocity written out: branches in float32, v_u + s (v_c - v_u)."""
    null = adapter.null_conditioning(cond.batch_size)

    def fn(z, t):
        if batched:
            v = adapter.velocity(torch.cat([z, z]), torch.cat([t, t]), Conditioning.cat([cond, null])).float()
            v_c, v_u = v[: z.shape[0]], v[z.shape[0]:]
        else:
            v_c, v_u = adapter.velocity(z, t, cond).float(), adapter.velocity(z, t, null).float()
        return v_u + scale * (v_c - v_u)

    return fn


class _Counting:
    """Wraps an adapter's velocity, recording the batch size of every forward."""

    def __init__(self, adapter):
        self.adapter, self.rows = adapter, []

    def __getattr__(self, name):
        return getattr(self.adapter, name)

    def velocity(self, z, t, cond):
        self.rows.append(z.shape[0])
        return self.adapter.velocity(z, t, cond)


@pytest.mark.parametrize("batched", [True, False])
def test_guided_velocity_is_the_written_out_formula(adapter, batched):
    cond = adapter.encode_prompts(PROMPTS)
    z = torch.randn(3, *adapter.latent_shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.9, 0.5, 0.1])
    with torch.no_grad():
        ours = guided_velocity(adapter, cond, SCALE, batched=batched)(z, t)
        ref = _reference_velocity(adapter, cond, SCALE, batched)(z, t)
        plain = adapter.velocity(z, t, cond)
    assert ours.dtype == torch.float32 and torch.equal(ours, ref)
    assert not torch.allclose(ours, plain)  # the scale acts


@pytest.mark.parametrize("scale, batched, rows", [(1.0, True, [3]), (SCALE, True, [6]), (SCALE, False, [3, 3])])
def test_forwards_per_call(adapter, scale, batched, rows):
    counting = _Counting(adapter)
    with torch.no_grad():
        guided_velocity(counting, adapter.encode_prompts(PROMPTS), scale, batched=batched)(
            torch.zeros(3, *adapter.latent_shape), torch.full((3,), 0.5))
    assert counting.rows == rows and len(rows) * rows[0] == 3 * forwards_per_velocity(scale)


def test_no_guidance_is_the_plain_velocity_in_the_model_dtype():
    bf16 = ShapesAdapter.random(seed=0, num_layers=1).to("cpu", torch.bfloat16)
    cond = bf16.encode_prompts(PROMPTS[:2])
    z, t = torch.randn(2, *bf16.latent_shape), torch.full((2,), 0.5)
    with torch.no_grad():
        v = guided_velocity(bf16, cond, 1.0)(z, t)
        assert v.dtype == torch.bfloat16 and torch.equal(v, bf16.velocity(z, t, cond))
        assert guided_velocity(bf16, cond, SCALE)(z, t).dtype == torch.float32


@pytest.mark.parametrize("solver", ["euler", "dpm++2m"])
def test_guided_ode_rollout_is_the_plain_computation(adapter, solver):
    """Chunks of 4 over 6 samples (one partial chunk), two forwards per step as the rollout does."""
    out = rollout(adapter, PROMPTS, [0, 5, 7], iteration=ITERATION, seed=SEED, group_size=G, steps=3,
                  solver=solver, shift=1.5, cfg_scale=SCALE, batch_size=4)
    cond, _, noise = group_inputs(adapter, PROMPTS, [0, 5, 7], group_size=G, seed=SEED, iteration=ITERATION)
    ref = torch.cat([
        sample(_reference_velocity(adapter, cond.index(sl), SCALE, batched=False), noise[sl], steps=3,
               solver=solver, shift=1.5)
        for sl in (slice(0, 4), slice(4, 6))
    ])
    assert torch.equal(out.x0, ref)


def test_guided_sde_rollout_is_the_plain_computation(adapter):
    """Chunks of 4 over 6 samples, one batched forward per step as the rollout does."""
    out = sde_rollout(adapter, PROMPTS, [0, 5, 7], iteration=ITERATION, seed=SEED, group_size=G, steps=3,
                      shift=1.5, noise_level=0.7, cfg_scale=SCALE, batch_size=4)
    cond, index, noise = group_inputs(adapter, PROMPTS, [0, 5, 7], group_size=G, seed=SEED, iteration=ITERATION)
    latents, log_probs = [], []
    for sl in (slice(0, 4), slice(4, 6)):
        tr = sample_sde(_reference_velocity(adapter, cond.index(sl), SCALE, batched=True), noise[sl], steps=3,
                        shift=1.5, noise_level=0.7,
                        step_noise=step_noise(tuple(adapter.latent_shape), 3, SEED, ITERATION, index[sl]))
        latents.append(tr.latents.transpose(0, 1))
        log_probs.append(tr.log_probs.transpose(0, 1))
    assert torch.equal(out.latents, torch.cat(latents)) and torch.equal(out.log_probs, torch.cat(log_probs))
    assert out.cfg_scale == SCALE


def test_shapes_sample_path_is_the_plain_computation(adapter):
    from vgrpo.tasks.shapes import generate_images

    images = generate_images(adapter, PROMPTS, seed=4, solver="heun", steps=2, shift=1.0, guidance=SCALE)
    noise = torch.randn(3, *adapter.latent_shape, generator=torch.Generator().manual_seed(4))
    ref = sample(_reference_velocity(adapter, adapter.encode_prompts(PROMPTS), SCALE, batched=True), noise,
                 steps=2, solver="heun", shift=1.0)
    assert torch.equal(images, adapter.decode(ref))
