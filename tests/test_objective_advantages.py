"""Group-relative advantages, several rewards, degenerate groups, soft-clipping."""

import math

import pytest
import torch

from vgrpo.objective import group_advantages, soft_clip


def test_advantages_are_standardised_within_each_group():
    rewards = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 40.0])
    adv = group_advantages(rewards, 3, std_eps=0.0)
    for g in range(2):
        a = adv[3 * g : 3 * g + 3].double()
        assert a.mean().item() == pytest.approx(0.0, abs=1e-6)
        assert a.std(unbiased=False).item() == pytest.approx(1.0, rel=1e-6)
    assert adv[0] < adv[1] < adv[2]


def test_zero_variance_group_gets_zero_advantage_without_nan():
    rewards = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.0, 1.0, 0.0, 1.0])
    adv = group_advantages(rewards, 4)
    assert torch.isfinite(adv).all()
    assert torch.equal(adv[:4], torch.zeros(4))
    assert adv[5] > 0 > adv[4]


def test_several_rewards_are_normalised_separately_then_weighted():
    a = torch.tensor([0.0, 1.0, 2.0, 3.0])
    b = torch.tensor([100.0, 300.0, 200.0, 0.0])
    both = group_advantages(torch.stack([a, b], 1), 4, weights=[0.5, 2.0])
    expected = 0.5 * group_advantages(a, 4) + 2.0 * group_advantages(b, 4)
    torch.testing.assert_close(both, expected)


def test_invalid_samples_get_zero_and_leave_the_group_statistics():
    rewards = torch.tensor([1.0, 2.0, float("nan"), 3.0])
    valid = torch.isfinite(rewards)
    adv = group_advantages(rewards, 4, valid=valid)
    assert adv[2] == 0 and torch.isfinite(adv).all()
    torch.testing.assert_close(adv[[0, 1, 3]], group_advantages(torch.tensor([1.0, 2.0, 3.0]), 3))


def test_soft_clip_is_bounded_identity_near_zero_and_monotone():
    a = torch.linspace(-100, 100, 2001)
    c = soft_clip(a, 3.0)
    assert c.abs().max() <= 3.0  # saturates to eta in float32 far out
    assert bool((c.diff() >= 0).all())
    moderate = soft_clip(torch.linspace(-6, 6, 121), 3.0)
    assert moderate.abs().max() < 3.0 and bool((moderate.diff() > 0).all())
    small = torch.tensor([1e-3, -2e-3])
    torch.testing.assert_close(soft_clip(small, 3.0), small, rtol=1e-6, atol=0)
    assert soft_clip(torch.tensor([1e4]), 3.0).item() == pytest.approx(3.0)
    adv = group_advantages(torch.tensor([0.0, 0.0, 0.0, 100.0]), 4, soft_clip_eta=1.0)
    assert adv.abs().max() < 1.0
    assert adv[3].item() == pytest.approx(math.tanh(math.sqrt(3)), rel=1e-3)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(group_size=3), "not a multiple of group_size"),
        (dict(weights=[1.0, 2.0]), "one entry per reward"),
        (dict(soft_clip_eta=0.0), "soft_clip_eta must be > 0"),
    ],
)
def test_bad_advantage_arguments_raise(kwargs, message):
    args = dict(group_size=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        group_advantages(torch.randn(4), **args)
