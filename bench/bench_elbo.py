"""Benchmark of the ELBO surrogate: reference eager vs reference compiled vs fused vs a copy.

Providers: "copy" (`Tensor.copy_` into a preallocated buffer, reading and writing as many bytes as
the op must move: the bandwidth bound), "reference-eager" (vgrpo.ops.reference),
"reference-compiled" (torch.compile of the same function), "fused" (the public
`elbo_surrogate` call with its defaults: C++ op on CPU, Triton op on CUDA). Modes: "forward",
"backward" (grad of loss wrt v_pred with a random upstream gradient, forward excluded), "full".
Shapes, K = 4 group-shared pairs: FLUX.1 1024x1024 (4096 packed tokens x 64 channels per sample)
and SD3.5 512x512 (16x64x64) with N = 24 samples (on CPU the FLUX batch is cut to N = 6, both CPU
shapes then fit in the last-level cache), and flux1024_dram, a batch whose v_pred is several times
the last-level cache (N = 24 in float32 on CPU: 100 MB; N = 96 in bf16 on GPU: 201 MB).
GPU inputs are bf16 (the model's dtype), CPU inputs float32.
extra_info: GB/s from the minimal bytes moved (read v_pred, x0, shared noise once; backward also
writes grad), peak extra memory of one call (MiB), device name; `bench/conftest.py` adds each
row's fraction of the copy bound and speedup vs the compiled reference to the JSON, and checks
the targets of bench/targets.py.
"""

from __future__ import annotations

import pytest
import torch

from bench.memory import device_name, peak_extra_mib
from bench.targets import MEDIANS
from vgrpo.ops import elbo_surrogate
from vgrpo.ops.reference import elbo_surrogate_reference

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
DTYPE = torch.bfloat16 if DEVICE.type == "cuda" else torch.float32
SHAPES = {  # name: (N, K, latent)
    "flux1024": (24 if DEVICE.type == "cuda" else 6, 4, (4096, 64)),
    "sd35_512": (24, 4, (16, 64, 64)),
    "flux1024_dram": (96 if DEVICE.type == "cuda" else 24, 4, (4096, 64)),
}
PROVIDERS = ("copy", "reference-eager", "reference-compiled", "fused")
MODES = ("forward", "backward", "full")

_compiled = torch.compile(elbo_surrogate_reference)


FNS = {  # the public call with its defaults: auto picks cpp on CPU, triton on CUDA
    "reference-eager": elbo_surrogate_reference,
    "reference-compiled": _compiled,
    "fused": elbo_surrogate,
}


def _inputs(shape):
    n, k, latent = shape
    g = torch.Generator(device=DEVICE).manual_seed(0)

    def randn(*s):
        return torch.randn(*s, generator=g, device=DEVICE, dtype=DTYPE)

    t = (torch.arange(k, device=DEVICE) + 0.5) / k
    return randn(n, k, *latent).requires_grad_(), randn(n, *latent), randn(k, *latent), t


def minimal_bytes(shape, mode: str) -> int:
    n, k, latent = shape
    d = 1
    for s in latent:
        d *= s
    size = torch.finfo(DTYPE).bits // 8
    fwd = (n * k * d + n * d + k * d) * size
    bwd = fwd + n * k * d * size
    return {"forward": fwd, "backward": bwd, "full": fwd + bwd}[mode]


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def _copy_run(shape, mode):
    """copy_ of minimal_bytes(shape, mode) / 2 bytes into a preallocated buffer (read + write)."""
    numel = minimal_bytes(shape, mode) // 2 // (torch.finfo(DTYPE).bits // 8)
    src = torch.randn(numel, device=DEVICE, dtype=DTYPE)
    dst = torch.empty_like(src)

    def run():
        dst.copy_(src)
        _sync()

    return run


def _op_run(shape, provider, mode):
    v_pred, x0, noise, t = _inputs(shape)
    fn = FNS[provider]
    grad_loss = torch.randn(shape[:2], device=DEVICE)

    def forward():
        out = fn(v_pred, x0, noise, t)
        _sync()
        return out

    def full():
        out = fn(v_pred, x0, noise, t)
        (grad,) = torch.autograd.grad(out.loss, v_pred, grad_loss)
        _sync()
        return grad

    full()  # warm-up (and compile)
    if mode == "forward":
        return forward
    if mode == "full":
        return full
    out = fn(v_pred, x0, noise, t)

    def backward():
        (grad,) = torch.autograd.grad(out.loss, v_pred, grad_loss, retain_graph=True)
        _sync()
        return grad

    return backward


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_elbo(benchmark, shape_name, provider, mode):
    shape = SHAPES[shape_name]
    run = _copy_run(shape, mode) if provider == "copy" else _op_run(shape, provider, mode)
    benchmark.extra_info["peak_extra_mib"] = peak_extra_mib(run, DEVICE)
    benchmark.pedantic(run, rounds=15 if DEVICE.type == "cpu" else 50, warmup_rounds=1, iterations=1)
    seconds = benchmark.stats.stats.median
    MEDIANS[(shape_name, mode, provider)] = seconds
    benchmark.extra_info["gb_per_s"] = minimal_bytes(shape, mode) / seconds / 1e9
    benchmark.extra_info["device"] = device_name(DEVICE)
    benchmark.extra_info["dtype"] = str(DTYPE)
    benchmark.extra_info["shape"] = {"N": shape[0], "K": shape[1], "latent": list(shape[2])}
