"""The one-off measurements' arithmetic: reward stability, headroom, and the variance ablation."""

import math

import pytest
import torch

from vgrpo.experiments.headroom import per_category
from vgrpo.experiments.reward_stability import rotated, stability, within_group_correlation
from vgrpo.experiments.variance import main as variance_main
from vgrpo.experiments.variance import summarize, surrogate_draws


def test_rotation_is_small_and_keeps_the_noise_standard_normal():
    noise = torch.randn(4096, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    r = rotated(noise, 0.02, seed=1)
    assert (r - noise).norm() / noise.norm() == pytest.approx(2 * math.sin(0.01), rel=0.05)
    assert float(r.std()) == pytest.approx(1.0, abs=0.01)
    assert torch.equal(rotated(noise, 0.02, seed=1), r)


def test_within_group_correlation_skips_constant_groups():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0])
    b = torch.tensor([2.0, 4.0, 6.0, 8.0, 1.0, 0.0, 1.0, 0.0])
    corr, used = within_group_correlation(a, b, 4)
    assert used == 1 and corr == pytest.approx(1.0)
    corr, used = within_group_correlation(a, -b, 4)
    assert corr == pytest.approx(-1.0)


def test_stability_counts_changes_and_the_noise_share():
    r0 = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert stability(r0, r0, 2)["noise_share"] == 0.0
    moved = stability(r0, r0 + torch.tensor([0.0, 0.02, 0.1, 0.0]), 2)
    assert moved["changed_gt_0.01"] == 0.5 and moved["changed_gt_0.05"] == 0.25
    assert moved["noise_share"] == pytest.approx((0.02**2 + 0.1**2) / 4 / (2 * 0.5))


def test_best_of_k_and_means_per_category():
    scores = torch.tensor([[0.2, 1.0, 0.5], [0.6, 0.0, 0.5]])  # K = 2 samples of 3 slots
    sat = scores >= 1.0
    out = per_category(scores, sat, ["colors", "colors", "position"])
    assert out["mean"] == pytest.approx({"colors": 0.45, "position": 0.5, "overall": 0.475})
    assert out["best_of_k"] == pytest.approx({"colors": 0.8, "position": 0.5, "overall": 0.65})
    assert out["accuracy"]["colors"] == 0.25


def test_variance_ablation_shared_stratified_pairs_cut_the_estimator_noise():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(17, 32), torch.nn.SiLU(), torch.nn.Linear(32, 16))

    def velocity(z, t):
        return net(torch.cat([z, t[:, None]], dim=1))

    x0 = torch.randn(4, 1, 16).add(0.5 * torch.randn(4, 4, 16)).reshape(16, 16)  # 4 groups of 4 similar samples
    rows = {
        key: summarize(surrogate_draws(velocity, x0, 4, 4, 8, sharing, stratified), 4)
        for key, sharing, stratified in (("independent", "none", False), ("vgrpo", "batch", True))
    }
    assert set(rows["vgrpo"]) == {"cv", "cv_within_group", "centred_noise_to_signal"}
    assert rows["vgrpo"]["centred_noise_to_signal"] * 2 < rows["independent"]["centred_noise_to_signal"]
    with pytest.raises(SystemExit):  # argument errors before any model is loaded
        variance_main(["--draws", "1"])
