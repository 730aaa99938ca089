"""Benchmark of the group-shared noising z[n, k] = (1 - t) x0[n] + t noise[k] (forward only: the
model inputs carry no gradient). Providers and shapes as bench_elbo.py; minimal bytes: read x0 and
the shared noise once, write z once."""

from __future__ import annotations

import pytest
import torch

from bench.bench_elbo import DEVICE, DTYPE, SHAPES, _inputs, _sync
from bench.memory import device_name, peak_extra_mib
from vgrpo.ops import noise_latents
from vgrpo.ops.reference import noise_latents_reference

FNS = {
    "reference-eager": noise_latents_reference,
    "reference-compiled": torch.compile(noise_latents_reference),
    "fused": noise_latents,  # auto: cpp on CPU, triton on CUDA
}


@pytest.mark.parametrize("provider", list(FNS))
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_noising(benchmark, shape_name, provider):
    n, k, latent = SHAPES[shape_name]
    _, x0, noise, t = _inputs(SHAPES[shape_name])
    fn = FNS[provider]

    def run():
        z = fn(x0, noise, t)
        _sync()
        return z

    run()
    benchmark.extra_info["peak_extra_mib"] = peak_extra_mib(run, DEVICE)
    benchmark.pedantic(run, rounds=15 if DEVICE.type == "cpu" else 50, warmup_rounds=1, iterations=1)
    size = torch.finfo(DTYPE).bits // 8
    nbytes = (x0.numel() + noise.numel() + n * k * x0[0].numel()) * size
    benchmark.extra_info["gb_per_s"] = nbytes / benchmark.stats.stats.median / 1e9
    benchmark.extra_info["device"] = device_name(DEVICE)
    benchmark.extra_info["dtype"] = str(DTYPE)
    benchmark.extra_info["shape"] = {"N": n, "K": k, "latent": list(latent)}
