"""The clipped ratio objective: ratio 1 at the start, clipping stops gradients, KL, diagnostics."""

import pytest
import torch

from vgrpo.objective import surrogate_cv, vgrpo_policy_loss
from vgrpo.ops import elbo_surrogate


def _scored(seed=0, n=6, k=4, latent=(3, 4)):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, k, *latent, generator=g).requires_grad_(True)
    x0 = torch.randn(n, *latent, generator=g)
    noise = torch.randn(k, *latent, generator=g)
    t = torch.rand(k, generator=g) * 0.9 + 0.05
    return v, x0, noise, t


def test_ratio_is_exactly_one_and_kl_exactly_zero_before_the_first_update():
    v, x0, noise, t = _scored()
    old = elbo_surrogate(v.detach(), x0, noise, t)
    new = elbo_surrogate(v, x0, noise, t, v_old=v.detach())
    adv = torch.randn(6)
    out = vgrpo_policy_loss(new.loss, old.loss, adv, clip_range=1e-2, pair_kl=new.kl, beta=0.3)
    assert torch.equal(out.ratio, torch.ones(6))
    assert out.metrics["kl"].item() == 0.0
    assert out.metrics["clip_fraction"].item() == 0.0
    torch.testing.assert_close(out.loss, -adv.mean())


def test_on_policy_gradient_is_the_advantage_weighted_surrogate_gradient():
    v, x0, noise, t = _scored()
    adv = torch.randn(6)
    new = elbo_surrogate(v, x0, noise, t)
    out = vgrpo_policy_loss(new.loss, new.loss.detach(), adv, clip_range=1e-2)
    (g_policy,) = torch.autograd.grad(out.loss, v)
    surrogate = elbo_surrogate(v, x0, noise, t).loss.mean(1)
    (g_expected,) = torch.autograd.grad((adv * surrogate).mean(), v)
    torch.testing.assert_close(g_policy, g_expected)


@pytest.mark.parametrize("sign,shift,clipped", [(1.0, -0.05, True), (1.0, 0.05, False), (-1.0, 0.05, True), (-1.0, -0.05, False)])
def test_clipping_stops_the_gradient_exactly_where_ppo_says(sign, shift, clipped):
    # log ratio = L_old - L_new = -shift: positive advantage with ratio above 1 + e is clipped,
    # negative advantage with ratio below 1 - e is clipped; the other two directions are not.
    pair_loss = torch.full((1, 4), 0.5, requires_grad=True)
    old = pair_loss.detach() - shift
    out = vgrpo_policy_loss(pair_loss, old, torch.tensor([sign]), clip_range=1e-2)
    (grad,) = torch.autograd.grad(out.loss, pair_loss)
    if clipped:
        assert torch.equal(grad, torch.zeros_like(grad))
        assert out.metrics["clip_fraction"].item() == 1.0
    else:
        assert bool((grad != 0).all())
        assert out.metrics["clip_fraction"].item() == 0.0


def test_no_clip_range_means_plain_importance_weighting():
    pair_loss = torch.full((2, 3), 0.5, requires_grad=True)
    old = pair_loss.detach() + torch.tensor([[0.5], [-0.5]])
    adv = torch.tensor([1.0, 2.0])
    out = vgrpo_policy_loss(pair_loss, old, adv, clip_range=None)
    ratio = torch.exp(torch.tensor([0.5, -0.5]))
    torch.testing.assert_close(out.loss, -(ratio * adv).mean())


def test_kl_term_is_added_with_beta_and_reported():
    v, x0, noise, t = _scored()
    v_old = (v + 0.1).detach()
    new = elbo_surrogate(v, x0, noise, t, v_old=v_old)
    base = vgrpo_policy_loss(new.loss, new.loss.detach(), torch.zeros(6), pair_kl=new.kl, beta=0.0)
    with_kl = vgrpo_policy_loss(new.loss, new.loss.detach(), torch.zeros(6), pair_kl=new.kl, beta=0.3)
    torch.testing.assert_close(with_kl.loss - base.loss, 0.3 * new.kl.mean())
    expected_kl = (t.reshape(1, -1, 1, 1) * 0.1).square().mean()
    torch.testing.assert_close(with_kl.metrics["kl"], expected_kl)


def test_ratio_diagnostics():
    pair_loss = torch.zeros(3, 2)
    old = torch.tensor([[0.0, 0.0], [0.02, 0.02], [-0.1, -0.1]])
    out = vgrpo_policy_loss(pair_loss, old, torch.ones(3), clip_range=1e-2)
    assert out.metrics["ratio_min"].item() == pytest.approx(float(torch.exp(torch.tensor(-0.1))))
    assert out.metrics["ratio_max"].item() == pytest.approx(float(torch.exp(torch.tensor(0.02))))
    assert out.metrics["clip_fraction"].item() == pytest.approx(1 / 3)
    assert out.metrics["log_ratio_std"].item() > 0


def test_bad_policy_loss_arguments_raise():
    with pytest.raises(ValueError, match=r"advantages must be \[B\] = \[3\]"):
        vgrpo_policy_loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="must both be"):
        vgrpo_policy_loss(torch.zeros(3, 2), torch.zeros(3, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="beta > 0 needs pair_kl"):
        vgrpo_policy_loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3), beta=0.1)


def test_surrogate_cv_overall_and_within_group():
    s = torch.tensor([1.0, 1.0, 2.0, 4.0])
    cv = surrogate_cv(s, 2)
    assert cv["cv_within_group"].item() == pytest.approx((0.0 + 1.0 / 3.0) / 2)
    assert cv["cv"].item() == pytest.approx(float(s.std(unbiased=False) / s.mean()))
