"""Stratified timesteps and group-shared timestep-noise pairs."""

import pytest
import torch

from vgrpo.objective import draw_pairs, sample_timesteps, shift_timesteps


@pytest.mark.parametrize("num_pairs", [1, 2, 4, 10])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_each_stratum_of_the_shifted_schedule_receives_exactly_one_t(num_pairs, shift):
    g = torch.Generator().manual_seed(1)
    t = sample_timesteps(500, num_pairs, g, stratified=True, shift=shift).double()
    edges = shift_timesteps(torch.linspace(0, 1, num_pairs + 1, dtype=torch.float64), shift)
    stratum = torch.bucketize(t, edges, right=False) - 1  # index j with edges[j] < t <= edges[j+1]
    expected = torch.arange(num_pairs).expand_as(stratum)
    assert torch.equal(stratum, expected)
    assert bool(((t > 0) & (t <= 1)).all())


def test_strata_are_filled_uniformly():
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(20000, 4, g, stratified=True, shift=1.0).double()
    # Within stratum j, t is uniform on (j/4, (j+1)/4]: mean at the midpoint, variance (1/4)^2 / 12.
    torch.testing.assert_close(t.mean(0), (torch.arange(4) + 0.5).double() / 4, atol=3e-3, rtol=0)
    torch.testing.assert_close(t.var(0), torch.full((4,), (0.25**2) / 12, dtype=torch.float64), atol=3e-4, rtol=0)


def test_unstratified_timesteps_cover_the_whole_range_in_every_column():
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(4000, 4, g, stratified=False)
    assert bool((t.min(0).values < 0.05).all()) and bool((t.max(0).values > 0.95).all())


def test_shift_matches_the_sd3_formula_and_is_monotone():
    u = torch.linspace(0, 1, 101, dtype=torch.float64)
    t = shift_timesteps(u, 3.0)
    torch.testing.assert_close(t, 3 * u / (1 + 2 * u))
    assert bool((t.diff() > 0).all()) and t[0] == 0 and t[-1] == 1


def test_batch_sharing_gives_one_set_of_pairs():
    pairs = draw_pairs(8, 4, (3, 5), 4, torch.Generator().manual_seed(0), sharing="batch")
    assert pairs.t.shape == (4,) and pairs.noise.shape == (4, 3, 5)


def test_group_sharing_repeats_pairs_inside_a_group_only():
    pairs = draw_pairs(6, 3, (7,), 2, torch.Generator().manual_seed(0), sharing="group")
    assert pairs.t.shape == (6, 2) and pairs.noise.shape == (6, 2, 7)
    assert torch.equal(pairs.noise[0], pairs.noise[2]) and torch.equal(pairs.t[0], pairs.t[1])
    assert not torch.equal(pairs.noise[2], pairs.noise[3])


def test_no_sharing_draws_independent_pairs_per_sample():
    pairs = draw_pairs(4, 2, (7,), 3, torch.Generator().manual_seed(0), sharing="none")
    assert pairs.noise.shape == (4, 3, 7)
    assert not torch.equal(pairs.noise[0], pairs.noise[1])
    assert not torch.equal(pairs.t[0], pairs.t[1])


def test_draws_are_reproducible_from_the_generator_and_fresh_on_the_next_draw():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = draw_pairs(4, 2, (3,), 4, g1)
    b = draw_pairs(4, 2, (3,), 4, g2)
    assert torch.equal(a.t, b.t) and torch.equal(a.noise, b.noise)
    c = draw_pairs(4, 2, (3,), 4, g1)
    assert not torch.equal(a.noise, c.noise)


def test_select_keeps_shared_pairs_and_slices_per_sample_pairs():
    g = torch.Generator().manual_seed(0)
    shared = draw_pairs(4, 2, (3,), 2, g, sharing="batch")
    assert shared.select(torch.tensor([1, 2])) is shared
    own = draw_pairs(4, 2, (3,), 2, g, sharing="none")
    sub = own.select(torch.tensor([3, 0]))
    assert torch.equal(sub.noise[0], own.noise[3]) and torch.equal(sub.t[1], own.t[0])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(sharing="prompt"), "sharing must be one of"),
        (dict(num_samples=5), "must be a multiple of group_size"),
        (dict(num_pairs=0), "num_pairs must be >= 1"),
        (dict(shift=0.0), "shift must be > 0"),
    ],
)
def test_bad_pair_arguments_raise(kwargs, message):
    args = dict(num_samples=4, group_size=2, latent_shape=(3,), num_pairs=2, generator=torch.Generator())
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        draw_pairs(
            args.pop("num_samples"), args.pop("group_size"), args.pop("latent_shape"),
            args.pop("num_pairs"), args.pop("generator"), **args,
        )
