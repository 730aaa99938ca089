"""Fused ELBO surrogate backends (C++ on CPU, Triton in the interpreter / on CUDA) vs the reference.

Every case runs forward AND backward with random upstream gradients on loss, mse and kl. The
Triton kernels run on CPU under TRITON_INTERPRET=1 (tests/conftest.py), so shapes stay tiny.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.ops_cases import HAS_CUDA, elbo_inputs, flat, skip_no_cpp, skip_no_triton
from vgrpo.ops import elbo_surrogate
from vgrpo.ops.backends import resolve_backend
from vgrpo.ops.checks import WEIGHTING_CODES
from vgrpo.ops.reference import elbo_surrogate_reference

requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
FUSED = [pytest.param("cpp", marks=skip_no_cpp), pytest.param("triton", marks=skip_no_triton)]
WEIGHTINGS = list(WEIGHTING_CODES)


def upstream(v_pred, seed=1):
    """Random upstream gradients (grad_loss, grad_mse, grad_kl), [N, K] in the accumulation dtype."""
    g = torch.Generator().manual_seed(seed)
    dtype = torch.float64 if v_pred.dtype == torch.float64 else torch.float32
    return [torch.randn(v_pred.shape[:2], generator=g, dtype=dtype).to(v_pred.device) for _ in range(3)]


def reference_run(v_pred, x0, noise, t, v_old, weighting, grads):
    """Reference terms and grad wrt v_pred for `grads` (kl's gradient only when v_old is given)."""
    v = v_pred.detach().clone().requires_grad_()
    out = elbo_surrogate_reference(v, x0, noise, t, v_old, weighting)
    terms = [out.loss, out.mse] + ([out.kl] if v_old is not None else [])
    torch.autograd.backward(terms, grads[: len(terms)])
    return out, v.grad


def fused_run(impl, v_pred, x0, noise, t, v_old, weighting, grads):
    """Fused terms and grad: "cpp" through the public API and autograd, "triton" through the launchers."""
    if impl == "cpp" or v_pred.is_cuda:
        v = v_pred.detach().clone().requires_grad_()
        out = elbo_surrogate(v, x0, noise, t, v_old=v_old, weighting=weighting, backend=impl)
        terms = [out.loss, out.mse] + ([out.kl] if v_old is not None else [])
        torch.autograd.backward(terms, grads[: len(terms)])
        return out, v.grad
    from vgrpo.kernels import elbo_surrogate as kern

    code = WEIGHTING_CODES[weighting]
    shared = noise.dim() == x0.dim()
    args = (flat(v_pred, 2), flat(x0, 1), flat(noise, 1 if shared else 2), t, flat(v_old, 2))
    loss, mse, mae, kl = kern.elbo_fwd(*args, code)
    g_kl = grads[2] if v_old is not None else torch.zeros_like(grads[2])
    grad = kern.elbo_bwd(grads[0], grads[1], g_kl, *args, mae, code)
    return (loss, mse, mae, kl if v_old is not None else None), grad.view_as(v_pred)


def assert_terms_close(out, ref, **tol):
    for name, a, b in zip(("loss", "mse", "mae", "kl"), out, ref):
        if b is None:
            assert a is None, name
        else:
            torch.testing.assert_close(a, b, **tol, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("impl", FUSED)
@pytest.mark.parametrize("shared", [True, False], ids=["shared_noise", "per_sample_noise"])
@pytest.mark.parametrize("per_sample_t", [False, True], ids=["t_per_pair", "t_per_sample"])
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_fp64_matches_reference(impl, shared, per_sample_t, weighting):
    with_old = weighting in ("adaptive", "eps")
    v_pred, x0, noise, t, v_old = elbo_inputs(shared=shared, per_sample_t=per_sample_t, with_old=with_old)
    grads = upstream(v_pred)
    out, grad = fused_run(impl, v_pred, x0, noise, t, v_old, weighting, grads)
    ref, ref_grad = reference_run(v_pred, x0, noise, t, v_old, weighting, grads)
    assert_terms_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)


def _max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


@pytest.mark.parametrize("impl", FUSED)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_low_precision_within_2x_of_reference_error(impl, dtype):
    """Kernel in low precision vs fp64 reference <= 2x (reference in low precision vs fp64 reference)."""
    v_pred, x0, noise, t, v_old = elbo_inputs(n=4, k=3, latent=(9, 31), dtype=dtype, seed=3)
    grads = upstream(v_pred)
    out, grad = fused_run(impl, v_pred, x0, noise, t, v_old, "adaptive", grads)
    low, low_grad = reference_run(v_pred, x0, noise, t, v_old, "adaptive", grads)
    as64 = [x.double() if x is not None else None for x in (v_pred, x0, noise, t, v_old)]
    exact, exact_grad = reference_run(*as64, "adaptive", [g.double() for g in grads])
    for name, a, b, e in zip(("loss", "mse", "mae", "kl"), out, low, exact):
        assert a.dtype == torch.float32, name
        assert _max_err(a, e) <= 2 * _max_err(b, e) + 1e-6 * e.abs().max().item(), name
    assert grad.dtype == dtype
    scale = exact_grad.abs().max().item()
    assert _max_err(grad, exact_grad) <= 2 * _max_err(low_grad, exact_grad) + 1e-6 * scale


@pytest.mark.parametrize(
    "impl,n,k,latent",
    [
        pytest.param("cpp", 7, 3, (16411,), marks=skip_no_cpp, id="cpp-D_prime_over_chunk"),
        pytest.param("cpp", 5, 1, (3, 11, 13), marks=skip_no_cpp, id="cpp-K1_sd3_layout"),
        pytest.param("triton", 7, 3, (1031,), marks=skip_no_triton, id="triton-D_prime_over_block"),
        pytest.param("triton", 1, 5, (3, 7, 11), marks=skip_no_triton, id="triton-N1_sd3_layout"),
    ],
)
def test_odd_shapes(impl, n, k, latent):
    v_pred, x0, noise, t, v_old = elbo_inputs(n=n, k=k, latent=latent, seed=5)
    grads = upstream(v_pred)
    out, grad = fused_run(impl, v_pred, x0, noise, t, v_old, "adaptive", grads)
    ref, ref_grad = reference_run(v_pred, x0, noise, t, v_old, "adaptive", grads)
    assert_terms_close(out, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-14)


@skip_no_cpp
def test_cpp_gradient_large_enough_for_huge_pages_matches_reference():
    """A gradient of 8 MiB or more takes the huge-page path; D is not a multiple of the tile."""
    v_pred, x0, noise, t, v_old = elbo_inputs(n=2, k=3, latent=(350_003,), dtype=torch.float32, seed=7)
    assert v_pred.numel() * v_pred.element_size() >= 8 << 20
    grads = upstream(v_pred)
    out, grad = fused_run("cpp", v_pred, x0, noise, t, v_old, "adaptive", grads)
    ref, ref_grad = reference_run(v_pred, x0, noise, t, v_old, "adaptive", grads)
    assert_terms_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-9)


@skip_no_cpp
def test_cpp_poisoned_outputs_are_all_written(monkeypatch):
    monkeypatch.setenv("VGRPO_DEBUG_POISON", "1")
    v_pred, x0, noise, t, v_old = elbo_inputs(n=5, k=3, latent=(16411,), shared=False, dtype=torch.float32)
    grads = upstream(v_pred)
    out, grad = fused_run("cpp", v_pred, x0, noise, t, v_old, "adaptive", grads)
    assert all(bool(torch.isfinite(x).all()) for x in (*out, grad))
    # Without v_old the kl output of the op is written too (zeros), though the API drops it.
    raw = torch.ops.vgrpo.elbo_fwd(flat(v_pred, 2), flat(x0, 1), flat(noise, 2), t, None, 1)
    assert bool((raw[3] == 0).all()) and bool(torch.isfinite(torch.stack(raw)).all())


@skip_no_triton
def test_triton_poisoned_outputs_are_all_written():
    from vgrpo.kernels import elbo_surrogate as kern

    v_pred, x0, noise, t, v_old = elbo_inputs(n=3, k=3, latent=(1031,), dtype=torch.float32)
    args = (flat(v_pred, 2), flat(x0, 1), flat(noise, 1), t, flat(v_old, 2))
    outs = tuple(torch.full((3, 3), float("nan")) for _ in range(4))
    kern.elbo_fwd(*args, 0, out=outs)
    assert bool(torch.isfinite(torch.stack(outs)).all())
    grad = torch.full_like(args[0], float("nan"))
    g = upstream(v_pred)
    kern.elbo_bwd(*g, *args, outs[2], 0, out=grad)
    assert bool(torch.isfinite(grad).all())


@skip_no_triton
@pytest.mark.parametrize("n_chunks", [2, 3])
def test_triton_forward_with_rows_split_across_programs(n_chunks):
    """The GPU launch splits each row over several programs (chunk partials + finish kernel)."""
    from vgrpo.kernels import elbo_surrogate as kern

    v_pred, x0, noise, t, v_old = elbo_inputs(n=2, k=3, latent=(2 * 1024 + 517,), shared=False, seed=7)
    out = kern.elbo_fwd(flat(v_pred, 2), flat(x0, 1), flat(noise, 2), t, flat(v_old, 2), 0, n_chunks=n_chunks)
    assert_terms_close(out, elbo_surrogate_reference(v_pred, x0, noise, t, v_old), rtol=1e-12, atol=1e-12)


@skip_no_cpp
def test_non_contiguous_inputs_are_copied():
    v_pred, x0, noise, t, v_old = elbo_inputs(latent=(6, 5))
    v_nc = v_pred.transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    assert not v_nc.is_contiguous()
    out = elbo_surrogate(v_nc, x0, noise, t, v_old=v_old, backend="cpp")
    ref = elbo_surrogate_reference(v_pred, x0, noise, t, v_old)
    assert_terms_close(out, ref, rtol=1e-12, atol=1e-12)


@skip_no_cpp
def test_mae_is_stop_gradient_and_kl_is_none_without_v_old():
    v_pred, x0, noise, t, _ = elbo_inputs(with_old=False)
    out = elbo_surrogate(v_pred.requires_grad_(), x0, noise, t, backend="cpp")
    assert out.loss.requires_grad and out.mse.requires_grad
    assert not out.mae.requires_grad
    assert out.kl is None


@skip_no_cpp
def test_auto_picks_cpp_on_cpu_but_reference_when_x0_needs_grad():
    assert resolve_backend("auto", torch.device("cpu")) == "cpp"
    v_pred, x0, noise, t, _ = elbo_inputs(with_old=False)
    x0.requires_grad_()
    out = elbo_surrogate(v_pred, x0, noise, t)  # auto -> torch: x0 gets its gradient
    out.loss.sum().backward()
    assert x0.grad is not None
    with pytest.raises(ValueError, match="x0 requires grad"):
        elbo_surrogate(v_pred, x0, noise, t, backend="cpp")


def test_missing_cpp_library_falls_back_to_reference_with_a_warning():
    """Simulate an install without vgrpo._C (VGRPO_BUILD_CPP=0) in a fresh interpreter."""
    code = r"""
import importlib.util, logging
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "vgrpo._C" else real(name, *a)
logging.basicConfig(level=logging.WARNING)
import torch
from vgrpo.ops import elbo_surrogate, noise_latents
from vgrpo.ops.backends import resolve_backend
from vgrpo.ops.reference import elbo_surrogate_reference
assert resolve_backend("auto", torch.device("cpu")) == "torch"
try:
    resolve_backend("cpp", torch.device("cpu"))
    raise SystemExit("cpp should be unavailable")
except RuntimeError as exc:
    assert "not available" in str(exc)
v, x, e, t = torch.randn(2, 3, 4), torch.randn(2, 4), torch.randn(3, 4), torch.rand(3) * 0.9 + 0.05
torch.testing.assert_close(elbo_surrogate(v, x, e, t).loss, elbo_surrogate_reference(v, x, e, t).loss)
assert noise_latents(x, e, t).shape == (2, 3, 4)
assert hasattr(torch.ops.vgrpo, "elbo_fwd")  # schema defined from Python instead
print("OK")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout
    assert "C++ ELBO op unavailable" in proc.stderr and "PyTorch reference" in proc.stderr


@skip_no_cpp
def test_opcheck_elbo_ops():
    v_pred, x0, noise, t, v_old = elbo_inputs(n=2, k=3, latent=(4, 5), shared=False, per_sample_t=True)
    args = (flat(v_pred, 2).requires_grad_(), flat(x0, 1), flat(noise, 2), t, flat(v_old, 2))
    for code in (0, 3):
        torch.library.opcheck(torch.ops.vgrpo.elbo_fwd.default, (*args, code))
    torch.library.opcheck(torch.ops.vgrpo.elbo_fwd.default, (*args[:4], None, 1))
    g = upstream(v_pred)
    mae = torch.rand(2, 3, dtype=torch.float64)
    torch.library.opcheck(torch.ops.vgrpo.elbo_bwd.default, (*g, *(a.detach() for a in args), mae, 0))


@skip_no_cpp
def test_mse_and_kl_pass_gradcheck():
    v_pred, x0, noise, t, v_old = elbo_inputs(n=2, k=2, latent=(3,))

    def f(v):
        out = elbo_surrogate(v, x0, noise, t, v_old=v_old, weighting="x", backend="cpp")
        return out.mse, out.kl

    assert torch.autograd.gradcheck(f, (v_pred.requires_grad_(),))


def _policy_loss(v_pred, x0, noise, t, v_old):
    out = elbo_surrogate(v_pred, x0, noise, t, v_old=v_old, check_values=False)
    return (out.loss.mean(1) - 0.3 * out.kl.mean(1)).sum()


@skip_no_cpp
@pytest.mark.compile
@pytest.mark.parametrize("compile_backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_forward_backward(compile_backend):
    torch._dynamo.reset()
    v_pred, x0, noise, t, v_old = elbo_inputs(n=2, k=3, latent=(4, 6), dtype=torch.float32)
    compiled = torch.compile(_policy_loss, fullgraph=True, backend=compile_backend)
    v1 = v_pred.clone().requires_grad_()
    compiled(v1, x0, noise, t, v_old).backward()
    v2 = v_pred.clone().requires_grad_()
    expected = _policy_loss(v2, x0, noise, t, v_old)
    expected.backward()
    torch.testing.assert_close(v1.grad, v2.grad)


# ---------------------------------------------------------------------------------------------
# CUDA only: the Triton kernels registered for the CUDA key, through the public API
# ---------------------------------------------------------------------------------------------
@requires_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_triton_matches_reference(shared, dtype):
    assert resolve_backend("auto", torch.device("cuda")) == "triton"
    v_pred, x0, noise, t, v_old = elbo_inputs(n=5, k=4, latent=(1021, 64), shared=shared, dtype=dtype,
                                              device="cuda")
    grads = upstream(v_pred)
    out, grad = fused_run("triton", v_pred, x0, noise, t, v_old, "adaptive", grads)
    low, low_grad = reference_run(v_pred, x0, noise, t, v_old, "adaptive", grads)
    as64 = [x.double() for x in (v_pred, x0, noise, t, v_old)]
    exact, exact_grad = reference_run(*as64, "adaptive", [g.double() for g in grads])
    for a, b, e in zip(out, low, exact):
        assert _max_err(a, e) <= 2 * _max_err(b, e) + 1e-6 * e.abs().max().item()
    assert _max_err(grad, exact_grad) <= 2 * _max_err(low_grad, exact_grad) + 1e-6 * exact_grad.abs().max().item()


@requires_cuda
@pytest.mark.gpu
def test_cuda_opcheck_and_compile():
    v_pred, x0, noise, t, v_old = elbo_inputs(n=2, k=3, latent=(257,), dtype=torch.float32, device="cuda")
    args = (flat(v_pred, 2).requires_grad_(), flat(x0, 1), flat(noise, 1), t, flat(v_old, 2), 0)
    torch.library.opcheck(torch.ops.vgrpo.elbo_fwd.default, args)
    torch._dynamo.reset()
    compiled = torch.compile(_policy_loss, fullgraph=True)
    v1 = v_pred.clone().requires_grad_()
    compiled(v1, x0, noise, t, v_old).backward()
    assert bool(torch.isfinite(v1.grad).all())


@requires_cuda
@pytest.mark.gpu
@pytest.mark.slow
def test_cuda_more_than_2_31_elements():
    n, k, d = 1, 2, 2**30 + 3  # N*K*D > 2^31: int64 offsets
    v_pred = torch.randn(n, k, d, device="cuda", dtype=torch.bfloat16)
    x0 = torch.randn(n, d, device="cuda", dtype=torch.bfloat16)
    noise = torch.randn(k, d, device="cuda", dtype=torch.bfloat16)
    t = torch.tensor([0.3, 0.7], device="cuda")
    out = elbo_surrogate(v_pred, x0, noise, t, backend="triton", check_values=False)
    last = elbo_surrogate_reference(v_pred[:, 1:, -4096:], x0[:, -4096:], noise[1:, -4096:], t[1:])
    assert bool(torch.isfinite(out.loss).all())
    # the mse of the last row's tail equals the whole row's mse only statistically; check order
    torch.testing.assert_close(out.mse[:, 1], last.mse[:, 0], rtol=0.1, atol=0)
