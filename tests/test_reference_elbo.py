"""The PyTorch reference of the ELBO surrogate: math, gradients, and argument errors."""

import pytest
import torch

from vgrpo.ops import elbo_surrogate, noise_latents
from vgrpo.ops.reference import MAE_EPS, elbo_surrogate_reference, noise_latents_reference


def _problem(n=3, k=4, latent=(2, 5), shared=True, per_sample_t=False, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, *latent, generator=g, dtype=dtype)
    noise_shape = (k, *latent) if shared else (n, k, *latent)
    noise = torch.randn(*noise_shape, generator=g, dtype=dtype)
    t_shape = (n, k) if per_sample_t else (k,)
    t = torch.rand(*t_shape, generator=g, dtype=dtype) * 0.9 + 0.05
    v_pred = torch.randn(n, k, *latent, generator=g, dtype=dtype)
    return v_pred, x0, noise, t


def test_matches_hand_computed_terms_for_one_element():
    # One sample, one pair, one latent element: every term has a closed form.
    x0, eps, t, v = 0.5, -1.0, 0.25, 0.3
    out = elbo_surrogate(
        torch.tensor([[[v]]], dtype=torch.float64),
        torch.tensor([[x0]], dtype=torch.float64),
        torch.tensor([[eps]], dtype=torch.float64),
        torch.tensor([t], dtype=torch.float64),
        v_old=torch.tensor([[[0.1]]], dtype=torch.float64),
    )
    z = (1 - t) * x0 + t * eps
    x_pred = z - t * v
    err = x_pred - x0
    assert out.mse.item() == pytest.approx(err**2)
    assert out.mae.item() == pytest.approx(abs(err))
    assert out.loss.item() == pytest.approx(err**2 / (abs(err) + MAE_EPS))
    assert out.kl.item() == pytest.approx((t * (v - 0.1)) ** 2)


@pytest.mark.parametrize("weighting,scale", [("x", lambda t: t), ("v", lambda t: 1.0), ("eps", lambda t: 1 - t)])
def test_ablation_weightings_are_the_parameterisations_mse(weighting, scale):
    v_pred, x0, noise, t = _problem()
    out = elbo_surrogate(v_pred, x0, noise, t, weighting=weighting)
    u = v_pred - (noise.unsqueeze(0) - x0.unsqueeze(1))
    c = scale(t).reshape(1, -1, 1, 1) if weighting != "v" else 1.0
    expected = (c * u).square().mean(dim=(2, 3))
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.mse, expected)


def test_eps_weighting_is_the_error_of_the_eps_prediction():
    v_pred, x0, noise, t = _problem()
    z = noise_latents(x0, noise, t)
    eps_pred = z + (1 - t).reshape(1, -1, 1, 1) * v_pred
    expected = (eps_pred - noise.unsqueeze(0)).square().mean(dim=(2, 3))
    torch.testing.assert_close(elbo_surrogate(v_pred, x0, noise, t, weighting="eps").loss, expected)


def test_shared_noise_equals_explicitly_broadcast_noise_and_t():
    v_pred, x0, noise, t = _problem(shared=True, per_sample_t=False)
    n, k = v_pred.shape[:2]
    shared = elbo_surrogate(v_pred, x0, noise, t, v_old=v_pred.flip(0))
    full = elbo_surrogate(
        v_pred, x0, noise.expand(n, *noise.shape).clone(), t.expand(n, k).clone(), v_old=v_pred.flip(0)
    )
    for a, b in zip(shared, full):
        torch.testing.assert_close(a, b)


def test_low_precision_inputs_accumulate_in_float32():
    v_pred, x0, noise, t = _problem(dtype=torch.float32)
    out = elbo_surrogate(v_pred.bfloat16(), x0.bfloat16(), noise.bfloat16(), t)
    assert all(term.dtype == torch.float32 for term in out[:3])
    ref = elbo_surrogate(v_pred.bfloat16().float(), x0.bfloat16().float(), noise.bfloat16().float(), t)
    torch.testing.assert_close(out.loss, ref.loss)


@pytest.mark.parametrize("shared,per_sample_t", [(True, False), (False, True)])
@pytest.mark.parametrize("weighting", ["adaptive", "v"])
def test_gradient_matches_finite_differences_in_float64(shared, per_sample_t, weighting):
    v_pred, x0, noise, t = _problem(n=2, k=3, latent=(3,), shared=shared, per_sample_t=per_sample_t)
    v_old = v_pred + 0.1 * torch.randn_like(v_pred)
    weights = torch.randn(2, 3, dtype=torch.float64)

    def objective(v):
        out = elbo_surrogate_reference(v, x0, noise, t, v_old, weighting)
        return (out.loss * weights).sum() + 0.3 * out.kl.sum()

    v = v_pred.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(v), v)
    # The mae is under stop-gradient, so finite differences must hold it fixed too.
    mae = elbo_surrogate_reference(v_pred, x0, noise, t, None, weighting).mae

    def objective_fixed_mae(v):
        out = elbo_surrogate_reference(v, x0, noise, t, v_old, weighting)
        loss = out.mse / (mae + MAE_EPS) if weighting == "adaptive" else out.mse
        return (loss * weights).sum() + 0.3 * out.kl.sum()

    fd = torch.zeros_like(v_pred)
    h = 1e-6
    for i in range(v_pred.numel()):
        e = torch.zeros(v_pred.numel(), dtype=torch.float64)
        e[i] = h
        e = e.reshape(v_pred.shape)
        fd.view(-1)[i] = (objective_fixed_mae(v_pred + e) - objective_fixed_mae(v_pred - e)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-8)


def test_mae_carries_no_gradient():
    v_pred, x0, noise, t = _problem()
    v = v_pred.clone().requires_grad_(True)
    out = elbo_surrogate(v, x0, noise, t)
    assert not out.mae.requires_grad
    assert out.loss.requires_grad and out.mse.requires_grad


def test_noise_latents_interpolates_and_casts():
    x0 = torch.randn(3, 4, 5)
    noise = torch.randn(2, 4, 5)
    t = torch.tensor([0.25, 1.0])
    z = noise_latents(x0, noise, t, out_dtype=torch.bfloat16)
    assert z.shape == (3, 2, 4, 5) and z.dtype == torch.bfloat16 and z.is_contiguous()
    torch.testing.assert_close(z[1, 0].float(), (0.75 * x0[1] + 0.25 * noise[0]).bfloat16().float())
    torch.testing.assert_close(z[:, 1].float(), noise[1].expand(3, 4, 5).bfloat16().float())
    per_sample = noise_latents_reference(x0, noise.expand(3, 2, 4, 5), t.expand(3, 2))
    torch.testing.assert_close(per_sample, noise_latents(x0, noise, t))


BAD_CALLS = {
    "x0 shape": (dict(x0=torch.randn(3, 2, 4)), "x0 must be [N, *latent] = [3, 2, 5]"),
    "noise shape": (dict(noise=torch.randn(5, 2, 5)), "noise must be [K, *latent] = [4, 2, 5]"),
    "t shape": (dict(t=torch.rand(3)), "t must be [K] = [4] or [N, K] = [3, 4]"),
    "t zero": (dict(t=torch.tensor([0.0, 0.5, 0.5, 0.5])), "t must lie in (0, 1]"),
    "t above one": (dict(t=torch.tensor([0.5, 0.5, 0.5, 1.5])), "t must lie in (0, 1]"),
    "t nan": (dict(t=torch.tensor([0.5, float("nan"), 0.5, 0.5])), "t contains NaN"),
    "v_pred nan": (dict(v_pred="nan"), "v_pred contains NaN"),
    "noise inf": (dict(noise="inf"), "noise contains NaN or inf"),
    "dtype": (dict(x0=torch.randn(3, 2, 5, dtype=torch.float64)), "x0 must have v_pred's dtype"),
    "v_pred rank": (dict(v_pred=torch.randn(3, 4)), "v_pred must be [N, K, *latent]"),
    "v_old shape": (dict(v_old=torch.randn(3, 4, 2, 4)), "v_old must have v_pred's shape"),
    "weighting": (dict(weighting="sqrt"), "weighting must be one of"),
    "backend": (dict(backend="cuda-magic"), "backend must be one of"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_arguments_raise_errors_naming_the_argument(case):
    overrides, message = BAD_CALLS[case]
    args = dict(zip(("v_pred", "x0", "noise", "t"), _problem(dtype=torch.float32)))
    for name, value in overrides.items():
        if value == "nan" or value == "inf":
            bad = args[name].clone()
            bad.view(-1)[3] = float(value)
            overrides = {**overrides, name: bad}
    args.update(overrides)
    kwargs = {k: args.pop(k) for k in ("v_old", "weighting", "backend") if k in args}
    with pytest.raises((ValueError, TypeError)) as info:
        elbo_surrogate(args["v_pred"], args["x0"], args["noise"], args["t"], **kwargs)
    assert message in str(info.value)
