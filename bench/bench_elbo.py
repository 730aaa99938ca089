"""Benchmark of the ELBO surrogate: reference eager vs reference compiled vs fused.

Providers: "reference-eager" (vgrpo.ops.reference), "reference-compiled" (torch.compile of the
same function), "fused" (C++ op on CPU, Triton op on CUDA). Modes: "forward", "backward" (grad of
loss wrt v_pred with a random upstream gradient, forward excluded), "full" (both).
Shapes: FLUX.1 1024x1024 (4096 packed tokens x 64 channels per sample), SD3.5 512x512 (16x64x64),
N = 24 samples, K = 4 group-shared pairs; on CPU the FLUX batch is cut to N = 6 so a round stays
around a second. GPU inputs are bf16 (the model's dtype), CPU inputs float32.
extra_info: GB/s from the minimal bytes moved (read v_pred, x0, shared noise once; backward also
writes grad), peak extra memory of one call (MiB), device name.
"""

from __future__ import annotations

import pytest
import torch

from bench.memory import device_name, peak_extra_mib
from vgrpo.ops import elbo_surrogate
from vgrpo.ops.reference import elbo_surrogate_reference

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
DTYPE = torch.bfloat16 if DEVICE.type == "cuda" else torch.float32
SHAPES = {  # name: (N, K, latent)
    "flux1024": (24 if DEVICE.type == "cuda" else 6, 4, (4096, 64)),
    "sd35_512": (24, 4, (16, 64, 64)),
}
PROVIDERS = ("reference-eager", "reference-compiled", "fused")
MODES = ("forward", "backward", "full")

_compiled = torch.compile(elbo_surrogate_reference)


def _fused(v_pred, x0, noise, t):
    return elbo_surrogate(v_pred, x0, noise, t, check_values=False)  # auto: cpp on CPU, triton on CUDA


FNS = {"reference-eager": elbo_surrogate_reference, "reference-compiled": _compiled, "fused": _fused}


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


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_elbo(benchmark, shape_name, provider, mode):
    shape = SHAPES[shape_name]
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
    if mode == "backward":
        out = fn(v_pred, x0, noise, t)

        def backward():
            (grad,) = torch.autograd.grad(out.loss, v_pred, grad_loss, retain_graph=True)
            _sync()
            return grad

        run = backward
    else:
        run = forward if mode == "forward" else full

    benchmark.extra_info["peak_extra_mib"] = peak_extra_mib(run, DEVICE)
    benchmark.pedantic(run, rounds=15 if DEVICE.type == "cpu" else 50, warmup_rounds=1, iterations=1)
    seconds = benchmark.stats.stats.median
    benchmark.extra_info["gb_per_s"] = minimal_bytes(shape, mode) / seconds / 1e9
    benchmark.extra_info["device"] = device_name(DEVICE)
    benchmark.extra_info["dtype"] = str(DTYPE)
    benchmark.extra_info["shape"] = {"N": shape[0], "K": shape[1], "latent": list(shape[2])}
