"""Attention-backend switch: "sdpa" reproduces the stock processors; "flash" fails clearly without flash-attn."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

from tests.conftest import requires_cuda
from vgrpo.accel.attention import JointAttnDispatchProcessor, set_attention_backend


def tiny_sd3():
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(0)
    return SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=48, caption_projection_dim=32, pooled_projection_dim=40,
        pos_embed_max_size=16, dual_attention_layers=(0,), qk_norm="rms_norm",
    )


def tiny_flux():
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    return FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )


def sd3_inputs() -> dict[str, torch.Tensor]:
    """Two samples: latents [2, 16, 8, 8], 12 text tokens of width 48, pooled [2, 40], timesteps 1000 t."""
    g = torch.Generator().manual_seed(1)
    return dict(
        hidden_states=torch.randn(2, 16, 8, 8, generator=g), encoder_hidden_states=torch.randn(2, 12, 48, generator=g),
        pooled_projections=torch.randn(2, 40, generator=g), timestep=torch.tensor([300.0, 800.0]),
    )


def _run(model, inputs):
    out = model(**inputs, return_dict=False)[0]
    grad = torch.autograd.grad(out.square().sum(), model.transformer_blocks[0].attn.to_q.weight)[0]
    return out, grad


def test_sdpa_switch_matches_stock_sd3_processor():
    stock = tiny_sd3()
    switched = copy.deepcopy(stock)
    # Block 0 has joint attention + a second (dual) self-attention, block 1 joint attention only.
    assert set_attention_backend(switched, "sdpa") == 3
    assert isinstance(switched.transformer_blocks[0].attn2.processor, JointAttnDispatchProcessor)
    inputs = sd3_inputs()
    for a, b in zip(_run(stock, inputs), _run(switched, inputs)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_sdpa_switch_matches_stock_flux_processor():
    stock = tiny_flux()
    switched = copy.deepcopy(stock)
    assert set_attention_backend(switched, "sdpa") == 2
    g = torch.Generator().manual_seed(2)
    inputs = dict(
        hidden_states=torch.randn(2, 16, 64, generator=g), encoder_hidden_states=torch.randn(2, 8, 32, generator=g),
        pooled_projections=torch.randn(2, 32, generator=g), timestep=torch.tensor([0.3, 0.8]),
        guidance=torch.full((2,), 3.5), txt_ids=torch.zeros(8, 3), img_ids=torch.zeros(16, 3),
    )
    for a, b in zip(_run(stock, inputs), _run(switched, inputs)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bad_backend_and_missing_flash_are_clear():
    model = tiny_sd3()
    with pytest.raises(ValueError, match="must be one of"):
        set_attention_backend(model, "xformers")
    if importlib.util.find_spec("flash_attn") is None:
        with pytest.raises(ImportError, match="flash-attn package"):
            set_attention_backend(model, "flash")
    else:
        with pytest.raises(ValueError, match="CUDA devices only"):
            set_attention_backend(model, "flash")


@requires_cuda
@pytest.mark.gpu
def test_flash_matches_sdpa_on_gpu():
    pytest.importorskip("flash_attn")
    sdpa = tiny_sd3().to("cuda", torch.bfloat16)
    flash = copy.deepcopy(sdpa)
    set_attention_backend(sdpa, "sdpa")
    set_attention_backend(flash, "flash")
    ref = tiny_sd3().to("cuda")  # float32 reference
    inputs = {k: v.cuda() for k, v in sd3_inputs().items()}
    low = {k: v.to(torch.bfloat16) for k, v in inputs.items()}
    out_ref = ref(**inputs, return_dict=False)[0]
    err_sdpa = (sdpa(**low, return_dict=False)[0].float() - out_ref).abs().max()
    err_flash = (flash(**low, return_dict=False)[0].float() - out_ref).abs().max()
    assert err_flash <= 2 * err_sdpa + 1e-3  # flash may not be much worse than bf16 SDPA
