"""FluxAdapter on a tiny random FLUX.1 directory: loading, prompt cache, conventions vs FluxPipeline."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures_tiny_models import RESOLUTION, T5_LENGTH, tiny_flux_dir
from vgrpo.models.flux import FluxAdapter, image_ids, pack_latents, pipeline_shift, unpack_latents
from vgrpo.models.registry import build_adapter

PROMPTS = ["a red cube", "a photo of a cat"]


@pytest.fixture(scope="module")
def flux_dir():
    return tiny_flux_dir()


@pytest.fixture(scope="module")
def adapter(flux_dir):
    return build_adapter(
        "flux", str(flux_dir), device="cpu", dtype=torch.float32,
        resolution=RESOLUTION, max_sequence_length=T5_LENGTH, guidance=3.5,
    )


def test_registry_builds_flux_adapter(adapter):
    assert isinstance(adapter, FluxAdapter)
    tokens = (RESOLUTION // 16) ** 2
    assert adapter.latent_shape == (tokens, 64)
    assert len(adapter.transformer_blocks()) == 2
    assert not adapter.offload  # CPU: nothing to offload
    assert all(p.requires_grad for p in adapter.denoiser.parameters())
    assert not any(p.requires_grad for p in adapter.text_encoder_2.parameters())


def test_pack_unpack_roundtrip_and_ids():
    x = torch.randn(2, 16, 8, 6)
    assert torch.equal(unpack_latents(pack_latents(x), 8, 6), x)
    ids = image_ids(8, 6)
    assert ids.shape == (12, 3)
    assert ids[5].tolist() == [0.0, 1.0, 2.0]  # row 1, col 2 of the 4 x 3 patch grid


def test_pipeline_shift_matches_flux_dynamic_shift():
    cfg = dict(base_image_seq_len=256, max_image_seq_len=4096, base_shift=0.5, max_shift=1.15)
    assert pipeline_shift(4096, cfg) == pytest.approx(torch.tensor(1.15).exp().item(), rel=1e-6)
    assert pipeline_shift(256, cfg) == pytest.approx(torch.tensor(0.5).exp().item(), rel=1e-6)


def test_encode_prompts_shapes_and_cache(adapter):
    calls = adapter.cache.encoder_calls
    cond = adapter.encode_prompts(PROMPTS)
    assert cond.tensors["encoder_hidden_states"].shape == (2, T5_LENGTH, 32)
    assert cond.tensors["pooled_projections"].shape == (2, 32)
    assert adapter.cache.encoder_calls == calls + 1
    again = adapter.encode_prompts(list(reversed(PROMPTS)))
    assert adapter.cache.encoder_calls == calls + 1  # served from the cache, encoders not re-run
    assert torch.equal(again.tensors["pooled_projections"][0], cond.tensors["pooled_projections"][1])
    null = adapter.null_conditioning(3)
    pooled_null = null.tensors["pooled_projections"]
    assert null.batch_size == 3 and torch.equal(pooled_null[0], pooled_null[2])
    with pytest.raises(ValueError, match="single str"):
        adapter.encode_prompts("a red cube")


def test_velocity_matches_direct_transformer_call(adapter):
    cond = adapter.encode_prompts(PROMPTS)
    z = torch.randn(2, *adapter.latent_shape)
    t = torch.tensor([0.3, 0.9])
    v = adapter.velocity(z, t, cond)
    assert v.shape == z.shape and v.dtype == torch.float32
    h = RESOLUTION // 8
    direct = adapter.denoiser(
        hidden_states=z, timestep=t, guidance=torch.full((2,), 3.5),
        pooled_projections=cond.tensors["pooled_projections"],
        encoder_hidden_states=cond.tensors["encoder_hidden_states"],
        txt_ids=torch.zeros(T5_LENGTH, 3), img_ids=image_ids(h, h), return_dict=False,
    )[0]
    torch.testing.assert_close(v, direct)
    with pytest.raises(ValueError, match="z must be"):
        adapter.velocity(z[:, :3], t, cond)


def test_euler_sample_matches_flux_pipeline(adapter, flux_dir):
    """Same noise, same sigmas: the adapter's Euler ODE equals FluxPipeline's latents."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(flux_dir), dtype=torch.float32, local_files_only=True)
    noise = torch.randn(2, *adapter.latent_shape, generator=torch.Generator().manual_seed(0))
    out = pipe(
        prompt=PROMPTS, height=RESOLUTION, width=RESOLUTION, num_inference_steps=3, guidance_scale=3.5,
        max_sequence_length=T5_LENGTH, latents=noise.clone(), output_type="latent",
    ).images
    sigmas = pipe.scheduler.sigmas.tolist()  # [steps + 1], the pipeline's (dynamically shifted) grid, ends at 0
    assert len(sigmas) == 4
    cond = adapter.encode_prompts(PROMPTS)
    z = noise.clone()
    with torch.no_grad():
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            z = z + (s_next - s) * adapter.velocity(z, torch.full((2,), s), cond)
    torch.testing.assert_close(z, out, rtol=1e-4, atol=1e-4)

    images = adapter.decode(z)
    assert images.shape == (2, 3, RESOLUTION, RESOLUTION) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    pipe_images = pipe.vae.decode(
        unpack_latents(out, RESOLUTION // 8, RESOLUTION // 8) / pipe.vae.config.scaling_factor
        + pipe.vae.config.shift_factor, return_dict=False,
    )[0]
    torch.testing.assert_close(images, (pipe_images * 0.5 + 0.5).clamp(0, 1), rtol=1e-4, atol=1e-4)


def test_two_vgrpo_iterations_through_the_trainer(flux_dir, tmp_path):
    """Through the shared trainer from its config (model.name=flux, a prompt file): 2 iterations, LoRA."""
    from tests.trainer_setups import color_rewards, tiny_config
    from vgrpo.trainer.trainer import Trainer

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a cat\na red bicycle leaning on a wall\n")
    cfg = tiny_config(
        tmp_path, algorithm={"mu": 2, "minibatches": 1}, finetune={"mode": "lora"},
        model={"name": "flux", "path": str(flux_dir), "init": "pretrained", "resolution": RESOLUTION,
               "max_sequence_length": T5_LENGTH},
        rollout={"prompt_file": str(prompts)},
    )
    trainer = Trainer(cfg, reward_factory=color_rewards)  # the adapter comes from cfg.model
    assert set(trainer.train_prompts) == {"a photo of a cat", "a red bicycle leaning on a wall"}
    trainer.train()
    assert trainer.iteration == 2 and len(trainer.history) == 2
    assert all(torch.isfinite(torch.tensor(h["grad_norm"])) and h["grad_norm"] > 0 for h in trainer.history)
    lora_b = [p for n, p in trainer.adapter.denoiser.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # zero-initialised LoRA B moved: updates happened
