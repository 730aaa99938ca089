"""Fused group-shared noising z[n, k] = (1 - t) x0[n] + t noise[k] vs the reference."""

from __future__ import annotations

import pytest
import torch

from tests.ops_cases import HAS_CUDA, elbo_inputs, flat, skip_no_cpp, skip_no_triton
from vgrpo.ops import noise_latents
from vgrpo.ops.reference import noise_latents_reference

FUSED = [pytest.param("cpp", marks=skip_no_cpp), pytest.param("triton", marks=skip_no_triton)]
DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def fused_noise(impl, x0, noise, t, out_dtype):
    """"cpp" (and CUDA triton) through the public API; "triton" on CPU through the launcher."""
    if impl == "cpp" or x0.is_cuda:
        return noise_latents(x0, noise, t, out_dtype=out_dtype, backend=impl)
    from vgrpo.kernels.noising import noise_latents as launch

    shared = noise.dim() == x0.dim()
    z = launch(flat(x0, 1), flat(noise, 1 if shared else 2), t, out_dtype)
    return z.reshape(x0.shape[0], t.shape[-1], *x0.shape[1:])


def ulp(dtype: torch.dtype) -> float:
    """One unit in the last place at 1.0 (the interpreter rounds bf16 toward zero: allow 1 ulp)."""
    return torch.finfo(dtype).eps


@pytest.mark.parametrize("impl", FUSED)
@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("out_dtype", DTYPES)
def test_matches_reference_in_every_dtype(impl, in_dtype, out_dtype):
    _, x0, noise, t, _ = elbo_inputs(n=3, k=4, latent=(5, 7), dtype=in_dtype, with_old=False)
    z = fused_noise(impl, x0, noise, t, out_dtype)
    ref = noise_latents_reference(x0, noise, t, out_dtype)
    assert z.dtype == out_dtype and z.shape == ref.shape and z.is_contiguous()
    scale = ref.double().abs().max().item()
    assert (z.double() - ref.double()).abs().max().item() <= ulp(out_dtype) * scale


@pytest.mark.parametrize("impl", FUSED)
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("per_sample_t", [False, True])
def test_shared_and_per_sample_noise_and_t_odd_sizes(impl, shared, per_sample_t):
    d = 16411 if impl == "cpp" else 1031  # prime, beyond one C++ chunk / one Triton block
    _, x0, noise, t, _ = elbo_inputs(n=3, k=5, latent=(d,), shared=shared, per_sample_t=per_sample_t,
                                     with_old=False)
    z = fused_noise(impl, x0, noise, t, torch.float64)
    torch.testing.assert_close(z, noise_latents_reference(x0, noise, t), rtol=1e-15, atol=1e-15)


@skip_no_cpp
def test_cpp_poisoned_output_is_all_written(monkeypatch):
    monkeypatch.setenv("VGRPO_DEBUG_POISON", "1")
    _, x0, noise, t, _ = elbo_inputs(n=3, k=5, latent=(16411,), with_old=False, dtype=torch.float32)
    assert bool(torch.isfinite(noise_latents(x0, noise, t, out_dtype=torch.bfloat16, backend="cpp")).all())


@skip_no_triton
def test_triton_poisoned_output_is_all_written():
    from vgrpo.kernels.noising import noise_latents as launch

    _, x0, noise, t, _ = elbo_inputs(n=3, k=2, latent=(1031,), with_old=False, dtype=torch.float32)
    z = torch.full((3, 2, 1031), float("nan"), dtype=torch.bfloat16)
    launch(x0, noise, t, torch.bfloat16, out=z)
    assert bool(torch.isfinite(z).all())


@skip_no_cpp
def test_opcheck_and_non_contiguous_inputs():
    _, x0, noise, t, _ = elbo_inputs(n=2, k=3, latent=(4, 6), with_old=False)
    torch.library.opcheck(torch.ops.vgrpo.noise_latents.default, (flat(x0, 1), flat(noise, 1), t, torch.float16))
    x_nc = x0.transpose(1, 2).contiguous().transpose(1, 2)
    assert not x_nc.is_contiguous()
    torch.testing.assert_close(noise_latents(x_nc, noise, t, backend="cpp"), noise_latents_reference(x0, noise, t))


@skip_no_cpp
def test_auto_uses_reference_when_inputs_need_grad():
    _, x0, noise, t, _ = elbo_inputs(with_old=False)
    z = noise_latents(x0.requires_grad_(), noise, t)
    z.sum().backward()
    assert x0.grad is not None
    with pytest.raises(ValueError, match="x0 requires grad"):
        noise_latents(x0, noise, t, backend="cpp")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.gpu
def test_cuda_triton_matches_reference():
    _, x0, noise, t, _ = elbo_inputs(n=3, k=4, latent=(4096, 64), dtype=torch.float32, with_old=False,
                                     device="cuda")
    z = noise_latents(x0, noise, t, out_dtype=torch.bfloat16, backend="triton")
    torch.testing.assert_close(z, noise_latents_reference(x0, noise, t, torch.bfloat16))
