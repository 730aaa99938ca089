"""Benchmark of one training step of the FLUX.1-dev-size transformer (12B parameters, random weights).

GPU only (skipped without CUDA; needs ~60 GB free: bf16 weights + gradients, activations
checkpointed per block). Random weights time exactly like real ones, so no download is needed.

Step = forward + backward of `FluxTransformer2DModel` with FLUX.1-dev's config (19 double-stream +
38 single-stream blocks, width 3072, T5 width 4096, guidance embedding) on a batch holding 4096
image tokens (1024 x 1024: B = 1; 512 x 512: B = 4) and 512 T5 tokens per sample, gradient of all
parameters from a random upstream gradient on the velocity; every block activation-checkpointed
(as in training). Providers:
- "bf16-sdpa-eager": bf16 weights, PyTorch SDPA, eager;
- "bf16-flash": bf16, flash-attn 2 (skipped when flash-attn is not installed);
- "fp8-flash-compile": torchao FP8 training linears (vgrpo.accel.fp8 default filter, tensorwise
  scaling), flash-attn 2, per-block torch.compile.
extra_info: tokens, model TFLOP per step (explicit count: `flux_step_flops`), achieved TFLOP/s,
MFU against the GPU's dense bf16 peak, peak allocated memory (GiB), device.
Target (issue #6): fp8-flash-compile >= 1.4x bf16-sdpa-eager at 1024 x 1024.

    pytest bench/bench_flux_transformer.py --benchmark-only --benchmark-json=bench/results/h100_flux.json
"""

from __future__ import annotations

import pytest
import torch

from bench.memory import device_name

FLUX_DEV_CONFIG = dict(
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
TEXT_TOKENS = 512
CASES = {512: 4, 1024: 1}  # resolution -> batch (4096 image tokens per step either way)
PROVIDERS = ("bf16-sdpa-eager", "bf16-flash", "fp8-flash-compile")
# Dense (no sparsity) peak TFLOP/s by device-name substring: (bf16, fp8).
PEAK_TFLOPS = {"H200": (989.0, 1979.0), "H100": (989.0, 1979.0), "B200": (2250.0, 4500.0), "A100": (312.0, None)}

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def flux_forward_flops(cfg: dict, batch: int, img_tokens: int, txt_tokens: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward pass of FluxTransformer2DModel(**cfg).

    Counts every linear layer and the two attention GEMMs (Q K^T and P V: 4 L^2 D per layer with
    L = image + text tokens); norms, RoPE, softmax and activations are left out (< 1%).
    """
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    ni, nt = img_tokens, txt_tokens
    L = ni + nt

    def lin(rows: int, fan_in: int, fan_out: int) -> int:
        return 2 * rows * fan_in * fan_out

    per_sample = (
        lin(ni, cfg["in_channels"], d) + lin(nt, cfg["joint_attention_dim"], d)  # x / context embedders
        + lin(1, 256, d) + lin(1, d, d)  # timestep embedder
        + (lin(1, 256, d) + lin(1, d, d) if cfg["guidance_embeds"] else 0)  # guidance embedder
        + lin(1, cfg["pooled_projection_dim"], d) + lin(1, d, d)  # pooled text embedder
        + lin(1, d, 2 * d) + lin(ni, d, cfg.get("out_channels") or cfg["in_channels"])  # norm_out, proj_out
    )
    double = (
        2 * lin(1, d, 6 * d)  # AdaLN modulation, image and text streams
        + 4 * lin(ni, d, d) + 4 * lin(nt, d, d)  # q, k, v, out projections per stream
        + 4 * L * L * d  # attention GEMMs
        + 2 * lin(ni, d, 4 * d) + 2 * lin(nt, d, 4 * d)  # feed-forwards (4x, two linears each)
    )
    single = (
        lin(1, d, 3 * d) + 3 * lin(L, d, d) + lin(L, d, 4 * d)  # modulation, q k v, MLP in
        + 4 * L * L * d + lin(L, 5 * d, d)  # attention GEMMs, fused output projection
    )
    per_sample += cfg["num_layers"] * double + cfg["num_single_layers"] * single
    return batch * per_sample


def flux_step_flops(cfg: dict, batch: int, img_tokens: int, txt_tokens: int) -> int:
    """Model FLOPs of forward + backward (backward = 2x forward: input and weight gradients).
    Activation-checkpointing recomputation is not counted (standard MFU)."""
    return 3 * flux_forward_flops(cfg, batch, img_tokens, txt_tokens)


def test_flop_count_matches_torch_flop_counter():
    """The explicit count agrees with torch's FlopCounterMode on a small FLUX (math SDPA so its GEMMs are counted)."""
    from diffusers import FluxTransformer2DModel
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    cfg = dict(FLUX_DEV_CONFIG, num_layers=1, num_single_layers=2, attention_head_dim=16, num_attention_heads=2,
               joint_attention_dim=48, pooled_projection_dim=24, axes_dims_rope=(4, 6, 6))
    model = FluxTransformer2DModel(**cfg)
    b, ni, nt = 2, 16, 8
    inputs = dict(
        hidden_states=torch.randn(b, ni, 64), encoder_hidden_states=torch.randn(b, nt, 48),
        pooled_projections=torch.randn(b, 24), timestep=torch.rand(b), guidance=torch.full((b,), 3.5),
        txt_ids=torch.zeros(nt, 3), img_ids=torch.zeros(ni, 3), return_dict=False,
    )
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        model(**inputs)
    assert counter.get_total_flops() == flux_forward_flops(cfg, b, ni, nt)


def _peak(kind: int) -> float | None:
    name = torch.cuda.get_device_name()
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return peaks[kind]
    return None


def build_model(provider: str):
    """FLUX.1-dev-size transformer on the GPU in bf16, random weights, with `provider`'s switches."""
    from diffusers import FluxTransformer2DModel

    from vgrpo.accel.attention import set_attention_backend
    from vgrpo.accel.fp8 import convert_to_fp8

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = FluxTransformer2DModel(**FLUX_DEV_CONFIG)
    finally:
        torch.set_default_dtype(default)
    model.train()
    if provider.startswith("fp8"):
        convert_to_fp8(model)
    set_attention_backend(model, "flash" if "flash" in provider else "sdpa")
    model.enable_gradient_checkpointing()
    if provider.endswith("compile"):
        for block in list(model.transformer_blocks) + list(model.single_transformer_blocks):
            block.compile()
    return model


@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("resolution", list(CASES))
def test_flux_train_step(benchmark, resolution, provider):
    if "flash" in provider:
        pytest.importorskip("flash_attn")
    torch.cuda.empty_cache()
    model = build_model(provider)
    batch = CASES[resolution]
    ni = (resolution // 16) ** 2
    g = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device="cuda", dtype=torch.bfloat16)

    inputs = dict(
        hidden_states=randn(batch, ni, 64), encoder_hidden_states=randn(batch, TEXT_TOKENS, 4096),
        pooled_projections=randn(batch, 768), timestep=torch.rand(batch, device="cuda").bfloat16(),
        guidance=torch.full((batch,), 3.5, device="cuda", dtype=torch.bfloat16),
        txt_ids=torch.zeros(TEXT_TOKENS, 3, device="cuda"),
        img_ids=torch.zeros(ni, 3, device="cuda"), return_dict=False,
    )
    upstream = randn(batch, ni, 64)

    def step():
        for p in model.parameters():
            p.grad = None
        model(**inputs)[0].backward(upstream)
        torch.cuda.synchronize()

    for _ in range(3):  # warm-up: compile, autotuning, allocator
        step()
    torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(step, rounds=5, iterations=1)
    flops = flux_step_flops(FLUX_DEV_CONFIG, batch, ni, TEXT_TOKENS)
    tflops = flops / benchmark.stats.stats.median / 1e12
    peak_bf16 = _peak(0)
    benchmark.extra_info.update(
        resolution=resolution, batch=batch, image_tokens=ni, text_tokens=TEXT_TOKENS,
        parameters_b=sum(p.numel() for p in model.parameters()) / 1e9,
        step_tflop=flops / 1e12, achieved_tflops=tflops,
        mfu_bf16_peak=None if peak_bf16 is None else tflops / peak_bf16,
        peak_gib=torch.cuda.max_memory_allocated() / 2**30, device=device_name(torch.device("cuda")),
        torch=torch.__version__,
    )
    del model
    torch.cuda.empty_cache()
