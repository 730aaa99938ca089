"""Shared inputs and backends for the fused-op tests (tests/test_ops_*.py)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from vgrpo.ops.library import CPP_LOADED

HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_CUDA = torch.cuda.is_available()

skip_no_cpp = pytest.mark.skipif(not CPP_LOADED, reason="vgrpo._C not built")
skip_no_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton not installed")


def elbo_inputs(n=3, k=2, latent=(5, 7), *, shared=True, per_sample_t=False, with_old=True,
                dtype=torch.float64, device="cpu", seed=0):
    """(v_pred, x0, noise, t, v_old) with t in [0.05, 0.95]; v_old is None unless with_old."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)

    x0 = randn(n, *latent)
    noise = randn(k, *latent) if shared else randn(n, k, *latent)
    t_shape = (n, k) if per_sample_t else (k,)
    t = (torch.rand(*t_shape, generator=g, dtype=torch.float64) * 0.9 + 0.05).to(device)
    t = t.to(torch.float64 if dtype == torch.float64 else torch.float32)
    v_pred = randn(n, k, *latent)
    v_old = v_pred + 0.1 * randn(n, k, *latent) if with_old else None
    return v_pred, x0, noise, t, v_old


def flat(x: torch.Tensor | None, lead: int) -> torch.Tensor | None:
    """The kernels' layout: latent dims after `lead` flattened, contiguous."""
    return None if x is None else x.contiguous().reshape(*x.shape[:lead], -1)
