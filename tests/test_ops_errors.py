"""Bad arguments get the same error, naming the argument and the expected shape, from every backend."""

from __future__ import annotations

import pytest
import torch

from tests.ops_cases import HAS_CUDA, elbo_inputs, skip_no_cpp
from vgrpo.ops import elbo_surrogate, noise_latents

BACKENDS = [
    "torch",
    pytest.param("cpp", marks=skip_no_cpp),
    pytest.param("triton", marks=pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")),
]

BACKENDS_CPU = BACKENDS[:2]


def _case(backend):
    device = "cuda" if backend == "triton" else "cpu"
    return elbo_inputs(n=2, k=3, latent=(4, 5), dtype=torch.float32, device=device)


def _with_one(x, bad_value):
    x = x.clone()
    x.view(-1)[x.numel() // 2] = bad_value
    return x


def _t_with(bad_value):
    return lambda v, x, e, t, o: (v, x, e, torch.tensor([0.5, bad_value, 0.2], device=t.device), o)


CASES = [
    ("x0 shape", lambda v, x, e, t, o: (v, x[:, :3], e, t, o), r"x0 must be \[N, \*latent\] = \[2, 4, 5\]"),
    ("noise shape", lambda v, x, e, t, o: (v, x, e[:2], t, o), r"noise must be \[K, \*latent\] = \[3, 4, 5\]"),
    ("t shape", lambda v, x, e, t, o: (v, x, e, t[:2], o), r"t must be \[K\] = \[3\] or \[N, K\] = \[2, 3\]"),
    ("v_pred rank", lambda v, x, e, t, o: (v[:, :, 0, 0], x, e, t, o), r"v_pred must be \[N, K, \*latent\]"),
    ("v_old shape", lambda v, x, e, t, o: (v, x, e, t, o[:1]), r"v_old must have v_pred's shape \[2, 3, 4, 5\]"),
    ("x0 dtype", lambda v, x, e, t, o: (v, x.half(), e, t, o), r"x0 must have v_pred's dtype"),
    ("noise dtype", lambda v, x, e, t, o: (v, x, e.double(), t, o), r"noise must have v_pred's dtype"),
    ("v_pred int", lambda v, x, e, t, o: (v.int(), x, e, t, o), r"v_pred must be a floating tensor"),
    ("x0 device", lambda v, x, e, t, o: (v, x.to("meta"), e, t, o), r"x0 is on meta"),
    ("t nan", _t_with(float("nan")), r"t contains NaN or inf"),
    ("t inf", _t_with(float("inf")), r"t contains NaN or inf"),
    ("t zero", _t_with(0.0), r"t must lie in \(0, 1\]"),
    ("t just above one", _t_with(1.0000001), r"t must lie in \(0, 1\], got min .*, max 1\.00000012"),
    ("v_pred nan", lambda v, x, e, t, o: (v.clone().fill_(float("nan")), x, e, t, o), r"v_pred contains NaN"),
    ("noise inf", lambda v, x, e, t, o: (v, x, _with_one(e, float("inf")), t, o), r"noise contains NaN or inf"),
    ("v_old nan", lambda v, x, e, t, o: (v, x, e, t, _with_one(o, float("nan"))), r"v_old contains NaN"),
]
VALUE_CASES = {"t nan", "t inf", "t zero", "v_pred nan", "noise inf", "v_old nan"}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("what,mutate,match", CASES, ids=[c[0] for c in CASES])
def test_elbo_bad_argument_message(backend, what, mutate, match):
    """Default call on CPU; on CUDA the default checks no values (no host sync), so ask for them."""
    v, x, e, t, o = mutate(*_case(backend))
    kwargs = {"check_values": True} if backend == "triton" and what in VALUE_CASES else {}
    with pytest.raises((ValueError, TypeError), match=match):
        elbo_surrogate(v, x, e, t, v_old=o, backend=backend, **kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eager_value_check_names_the_argument_before_the_kernel(backend, monkeypatch):
    v, x, e, t, o = _case(backend)
    monkeypatch.setattr("vgrpo.ops.elbo.elbo_fused", _must_not_run)
    monkeypatch.setattr("vgrpo.ops.elbo.elbo_surrogate_reference", _must_not_run)
    with pytest.raises(ValueError, match=r"x0 contains NaN or inf"):
        elbo_surrogate(v, _with_one(x, float("nan")), e, t, v_old=o, backend=backend, check_values=True)


def _must_not_run(*args, **kwargs):
    raise AssertionError("the kernel ran although an input was bad")


@pytest.mark.parametrize("backend", BACKENDS_CPU)
def test_default_call_reads_the_inputs_once(backend, monkeypatch):
    """Finite inputs: the lazy check looks at the [N, K] terms only, never scans the inputs."""
    monkeypatch.setattr("vgrpo.ops.checks.check_finite", _must_not_run)
    v, x, e, t, o = _case(backend)
    out = elbo_surrogate(v, x, e, t, v_old=o, backend=backend)
    assert bool(torch.isfinite(out.loss).all())


@pytest.mark.parametrize("backend", BACKENDS_CPU)
def test_overflow_of_finite_inputs_propagates_instead_of_raising(backend):
    v, x, e, t, o = _case(backend)
    out = elbo_surrogate(v * 1e30, x, e, t, backend=backend)  # err^2 overflows float32
    assert bool(torch.isinf(out.mse).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_value_checks_nan_propagates_to_the_loss(backend):
    v, x, e, t, o = _case(backend)
    out = elbo_surrogate(v, _with_one(x, float("nan")), e, t, v_old=o, backend=backend, check_values=False)
    assert bool(torch.isnan(out.loss[1]).all()) and bool(torch.isfinite(out.loss[0]).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_noising_bad_arguments(backend):
    _, x, e, t, _ = _case(backend)
    with pytest.raises(ValueError, match=r"noise must be \[K, \*latent\] = \[3, 4, 5\]"):
        noise_latents(x, e[:2], t, backend=backend)
    with pytest.raises(ValueError, match=r"t contains NaN or inf"):
        noise_latents(x, e, torch.full_like(t, float("nan")), backend=backend)
    with pytest.raises(TypeError, match=r"noise must have x0's dtype"):
        noise_latents(x, e.double(), t, backend=backend)


NOISING_CASES = [
    ("x0 not a tensor", lambda x, e, t: (x.tolist(), e, t), TypeError, r"x0 must be a torch.Tensor, got list"),
    ("x0 rank", lambda x, e, t: (x[:, 0, 0], e, t), ValueError, r"x0 must be \[N, \*latent\], got shape \[2\]"),
    ("x0 int", lambda x, e, t: (x.int(), e.int(), t), TypeError, r"x0 must be a floating tensor"),
    ("x0 empty", lambda x, e, t: (x[:0], e, t), ValueError, r"x0 must be non-empty, got shape \[0, 4, 5\]"),
    ("t rank", lambda x, e, t: (x, e, t[None, None]), ValueError, r"t must be \[K\] or \[N, K\] with N = 2"),
    ("t int", lambda x, e, t: (x, e, t.int()), TypeError, r"t must be a floating tensor"),
    ("noise device", lambda x, e, t: (x, e.to("meta"), t), ValueError, r"noise is on meta but x0 is on"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("what,mutate,error,match", NOISING_CASES, ids=[c[0] for c in NOISING_CASES])
def test_noising_bad_argument_message(backend, what, mutate, error, match):
    _, x, e, t, _ = _case(backend)
    with pytest.raises(error, match=match):
        noise_latents(*mutate(x, e, t), backend=backend)


def test_noising_and_elbo_word_a_bad_noise_alike():
    """Both ops run the same shape check, so the same bad noise gets the same sentence."""
    v, x, e, t, _ = _case("torch")
    messages = []
    for call in (lambda: noise_latents(x, e[:2], t), lambda: elbo_surrogate(v, x, e[:2], t)):
        with pytest.raises(ValueError) as info:
            call()
        messages.append(str(info.value))
    assert messages[0] == messages[1] == (
        "noise must be [K, *latent] = [3, 4, 5] (shared) or [N, K, *latent] = [2, 3, 4, 5], got [2, 4, 5]")


def test_unknown_backend_and_weighting():
    v, x, e, t, _ = _case("torch")
    with pytest.raises(ValueError, match="backend must be one of"):
        elbo_surrogate(v, x, e, t, backend="cuda")
    with pytest.raises(ValueError, match="weighting must be one of"):
        elbo_surrogate(v, x, e, t, weighting="sigmoid", backend="torch")


def test_triton_backend_unavailable_on_cpu_is_named():
    v, x, e, t, _ = _case("torch")
    with pytest.raises(RuntimeError, match="backend 'triton' is not available on cpu"):
        elbo_surrogate(v, x, e, t, backend="triton")


@skip_no_cpp
def test_cpp_op_called_directly_checks_its_arguments():
    """The registered op itself (what other code may call) names the argument and the shape."""
    v, x, e, t, _ = _case("cpp")
    v3, x2, e2 = v.reshape(2, 3, 20), x.reshape(2, 20), e.reshape(3, 20)
    with pytest.raises(RuntimeError, match=r"x0 must be \[N, D\] = \[2, 20\], got \[2, 19\]"):
        torch.ops.vgrpo.elbo_fwd(v3, x2[:, :19], e2, t, None, 0)
    with pytest.raises(RuntimeError, match=r"noise must be \[K, D\] = \[3, 20\]"):
        torch.ops.vgrpo.elbo_fwd(v3, x2, e2[:2], t, None, 0)
    with pytest.raises(RuntimeError, match=r"t must be Float \(the accumulation dtype\), got Double"):
        torch.ops.vgrpo.elbo_fwd(v3, x2, e2, t.double(), None, 0)
    with pytest.raises(RuntimeError, match=r"weighting must be 0 \(adaptive\)"):
        torch.ops.vgrpo.elbo_fwd(v3, x2, e2, t, None, 7)
    with pytest.raises(RuntimeError, match=r"v_pred must be contiguous"):
        torch.ops.vgrpo.elbo_fwd(v3.transpose(0, 1).contiguous().transpose(0, 1), x2, e2, t, None, 0)
    with pytest.raises(RuntimeError, match=r"grad_mse must be \[N, K\] = \[2, 3\]"):
        g = torch.zeros(2, 3)
        torch.ops.vgrpo.elbo_bwd(g, g[:1], g, v3, x2, e2, t, None, g, 0)
    with pytest.raises(RuntimeError, match=r"noise must be \[K, D\] = \[3, 20\]"):
        torch.ops.vgrpo.noise_latents(x2, e2[:1], t, torch.float32)
