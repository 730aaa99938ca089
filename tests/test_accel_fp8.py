"""FP8 training conversion (torchao, emulated on CPU): the filter, and numerics vs bf16 as SQNR.

Floors (measured on CPU emulation, 2-block FLUX-style transformer of width 128, seed 0:
velocity 43 dB, per-sample surrogate 92 dB, to_q weight gradient 20 dB). torchao's own tests
hold FP8 forward outputs to 20-25 dB; the floors below leave a margin under the measured values.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from vgrpo.ops import elbo_surrogate

pytest.importorskip("torchao")

from torchao.float8.float8_linear import Float8Linear  # noqa: E402
from torchao.float8.float8_utils import compute_error  # noqa: E402

from vgrpo.accel.fp8 import convert_to_fp8, default_keep_filter, fp8_layer_names  # noqa: E402

SQNR_FLOOR_DB = {"velocity": 30.0, "surrogate": 60.0, "weight gradient": 15.0}
KEPT = [
    "x_embedder", "context_embedder", "time_text_embed.timestep_embedder.linear_1",
    "time_text_embed.guidance_embedder.linear_2", "time_text_embed.text_embedder.linear_1",
    "transformer_blocks.0.norm1.linear", "transformer_blocks.0.norm1_context.linear",
    "single_transformer_blocks.0.norm.linear", "norm_out.linear", "proj_out",
]


def tiny_flux(seed: int = 0) -> nn.Module:
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    return FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=32,
        num_attention_heads=4, joint_attention_dim=64, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(8, 12, 12),
    ).to(torch.bfloat16)


def test_default_filter_keeps_sensitive_layers():
    model = tiny_flux()
    converted = convert_to_fp8(model)
    assert set(converted) == set(fp8_layer_names(model))
    for name in KEPT:
        layer = model.get_submodule(name)
        assert type(layer) is nn.Linear, f"{name} should stay in high precision"
    for name in ("transformer_blocks.0.attn.to_q", "transformer_blocks.1.ff.net.2",
                 "single_transformer_blocks.0.proj_out", "single_transformer_blocks.1.proj_mlp"):
        assert isinstance(model.get_submodule(name), Float8Linear), name
    assert default_keep_filter("lora_A.default", nn.Linear(16, 16))
    with pytest.raises(ValueError, match="converted no linear layer"):
        convert_to_fp8(nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 16)), keep_filter=lambda fqn, m: True)


def test_default_filter_on_sd3():
    from diffusers import SD3Transformer2DModel

    model = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=48, caption_projection_dim=32, pooled_projection_dim=48,
        pos_embed_max_size=16, dual_attention_layers=(0,), qk_norm="rms_norm",
    )
    convert_to_fp8(model)
    for name in ("context_embedder", "time_text_embed.timestep_embedder.linear_1", "norm_out.linear", "proj_out",
                 "transformer_blocks.0.norm1.linear", "transformer_blocks.1.norm1_context.linear"):
        assert type(model.get_submodule(name)) is nn.Linear, name
    for name in ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn2.to_v", "transformer_blocks.1.ff.net.2"):
        assert isinstance(model.get_submodule(name), Float8Linear), name


def _forward_surrogate(model: nn.Module, seed: int = 1):
    """Velocity [B, T, 64], V-GRPO surrogate [B, 1] and the first to_q weight gradient."""
    b, tokens, text = 4, 32, 16
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, tokens, 64, generator=g)
    noise = torch.randn(b, tokens, 64, generator=g)
    t = torch.rand(b, generator=g) * 0.9 + 0.05
    z = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise
    bf = torch.bfloat16
    v = model(
        hidden_states=z.to(bf), timestep=t.to(bf), guidance=torch.full((b,), 3.5, dtype=bf),
        encoder_hidden_states=torch.randn(b, text, 64, generator=g).to(bf),
        pooled_projections=torch.randn(b, 32, generator=g).to(bf),
        txt_ids=torch.zeros(text, 3), img_ids=torch.zeros(tokens, 3), return_dict=False,
    )[0]
    terms = elbo_surrogate(v[:, None], x0.to(bf), noise[:, None].to(bf), t[:, None].to(bf))
    upstream = torch.randn(terms.loss.shape, generator=g)
    (terms.loss * upstream).sum().backward()
    return v.float(), terms.loss, model.transformer_blocks[0].attn.to_q.weight.grad.float()


def test_fp8_surrogate_agrees_with_bf16_within_sqnr():
    ref_model = tiny_flux()
    fp8_model = copy.deepcopy(ref_model)
    convert_to_fp8(fp8_model, emulate=True)
    ref, fp8 = _forward_surrogate(ref_model), _forward_surrogate(fp8_model)
    for (what, floor), a, b in zip(SQNR_FLOOR_DB.items(), ref, fp8):
        sqnr = compute_error(a, b).item()
        assert sqnr >= floor, f"{what}: SQNR {sqnr:.1f} dB below the {floor} dB floor"
    assert not torch.equal(ref[0], fp8[0])  # the FP8 path really ran
