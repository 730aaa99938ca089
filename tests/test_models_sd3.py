"""SD3Adapter on a tiny random SD 3.5 M directory: loading, prompt cache, conventions vs the pipeline."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures_tiny_models import RESOLUTION, T5_LENGTH, tiny_sd3_dir
from vgrpo.models.registry import build_adapter
from vgrpo.models.sd3 import SD3Adapter

PROMPTS = ["a blue sphere", "a dog on the left"]


@pytest.fixture(scope="module")
def sd3_dir():
    return tiny_sd3_dir()


@pytest.fixture(scope="module")
def adapter(sd3_dir):
    return build_adapter(
        "sd3", str(sd3_dir), device="cpu", dtype=torch.float32, resolution=RESOLUTION, max_sequence_length=T5_LENGTH
    )


@pytest.fixture(scope="module")
def pipe(sd3_dir):
    from diffusers import StableDiffusion3Pipeline

    return StableDiffusion3Pipeline.from_pretrained(str(sd3_dir), dtype=torch.float32, local_files_only=True)


def test_registry_builds_sd3_adapter(adapter):
    assert isinstance(adapter, SD3Adapter)
    assert adapter.latent_shape == (16, RESOLUTION // 8, RESOLUTION // 8)
    assert len(adapter.transformer_blocks()) == 2
    assert adapter.sampling["shift"] == 3.0  # from scheduler_config.json


def test_encode_prompts_shapes_and_cache(adapter):
    calls = adapter.cache.encoder_calls
    cond = adapter.encode_prompts(PROMPTS)
    # 77 CLIP tokens (16 + 24 channels zero-padded to 48) followed by the T5 tokens.
    assert cond.tensors["encoder_hidden_states"].shape == (2, 77 + T5_LENGTH, 48)
    assert cond.tensors["pooled_projections"].shape == (2, 16 + 24)
    assert torch.all(cond.tensors["encoder_hidden_states"][:, :77, 40:] == 0)
    adapter.encode_prompts(PROMPTS[:1] * 3)
    assert adapter.cache.encoder_calls == calls + 1
    assert adapter.null_conditioning(2).batch_size == 2


def _euler(adapter, noise, sigmas, cond, cfg_scale):
    z = noise.clone()
    null = adapter.null_conditioning(noise.shape[0])
    with torch.no_grad():
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            t = torch.full((noise.shape[0],), s)
            v = adapter.velocity(z, t, cond)
            if cfg_scale != 1.0:
                vu = adapter.velocity(z, t, null)
                v = vu + cfg_scale * (v - vu)
            z = z + (s_next - s) * v
    return z


@pytest.mark.parametrize("cfg_scale", [1.0, 4.5])
def test_euler_sample_matches_sd3_pipeline(adapter, pipe, cfg_scale):
    """Same noise and sigmas: adapter velocity (timestep = 1000 t) + Euler equals the pipeline, with and without CFG."""
    noise = torch.randn(2, *adapter.latent_shape, generator=torch.Generator().manual_seed(1))
    out = pipe(
        prompt=PROMPTS, height=RESOLUTION, width=RESOLUTION, num_inference_steps=3, guidance_scale=cfg_scale,
        max_sequence_length=T5_LENGTH, latents=noise.clone(), output_type="latent",
    ).images
    sigmas = pipe.scheduler.sigmas.tolist()
    z = _euler(adapter, noise, sigmas, adapter.encode_prompts(PROMPTS), cfg_scale)
    torch.testing.assert_close(z, out, rtol=1e-4, atol=1e-4)


def test_velocity_and_decode(adapter, pipe):
    cond = adapter.encode_prompts(PROMPTS)
    z = torch.randn(2, *adapter.latent_shape)
    v = adapter.velocity(z, torch.tensor([0.2, 0.7]), cond)
    assert v.shape == z.shape and v.dtype == torch.float32
    with pytest.raises(ValueError, match="t must be"):
        adapter.velocity(z, torch.tensor([0.2]), cond)
    images = adapter.decode(z)
    assert images.shape == (2, 3, RESOLUTION, RESOLUTION)
    assert images.min() >= 0 and images.max() <= 1
    cfg = pipe.vae.config
    ref = pipe.vae.decode(z / cfg.scaling_factor + cfg.shift_factor, return_dict=False)[0]
    torch.testing.assert_close(images, (ref * 0.5 + 0.5).clamp(0, 1), rtol=1e-4, atol=1e-4)


def test_without_t5_the_t5_tokens_are_zero(sd3_dir):
    adapter = build_adapter(
        "sd3", str(sd3_dir), device="cpu", dtype=torch.float32, resolution=RESOLUTION,
        max_sequence_length=T5_LENGTH, use_t5=False,
    )
    assert adapter.text_encoder_3 is None
    hidden = adapter.encode_prompts(PROMPTS).tensors["encoder_hidden_states"]
    assert hidden.shape == (2, 77 + T5_LENGTH, 48) and torch.all(hidden[:, 77:] == 0)


def test_two_vgrpo_iterations_from_the_command_line(sd3_dir, tmp_path):
    """`python -m vgrpo.train --preset=sd35m-stage1 --model.path=...`, shrunk to a tiny run."""
    import json

    from vgrpo.train import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a cat\na red bicycle leaning on a wall\n")
    code = main([
        "--preset=sd35m-stage1", f"--model.path={sd3_dir}", f"--model.resolution={RESOLUTION}",
        f"--model.max_sequence_length={T5_LENGTH}", "--model.dtype=float32", f"--rollout.prompt_file={prompts}",
        "--rollout.steps=2", "--rollout.group_size=4", "--rollout.prompts_per_iteration=2",
        "--algorithm.num_pairs=2", "--reward.names=jpeg_compressibility", "--job.iterations=2",
        f"--job.output_dir={tmp_path}", "--job.device=cpu", "--parallel.mixed_precision=fp32",
        "--checkpoint.every=-1", "--logging.tensorboard=false", "--logging.progress=false",
    ])
    assert code == 0
    run = tmp_path / "sd35m-stage1"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert len(train) == 2 and all(r["ratio_first_absdev"] == 0.0 for r in train)
    assert all(r["grad_norm"] > 0 for r in train)
    assert json.loads((run / "config.json").read_text())["finetune"]["lora_rank"] == 32
