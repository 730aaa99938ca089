"""The Flow-GRPO SDE sampler: marginals, log-probs against an independent computation, replay."""

import math

import torch

from vgrpo.sampling.sde import sample_sde, sde_timesteps, step_log_prob


def _linear_velocity(mu):
    """Exact velocity of rectified flow from N(mu, I) data to N(0, I) noise at z: v = E[eps - x0 | z]."""

    def velocity(z, t):
        t = t.reshape(-1, *([1] * (z.dim() - 1))).double()
        # z = (1-t) x0 + t eps with x0 ~ N(mu, I): E[x0|z] = mu + (1-t)(z - (1-t)mu) / ((1-t)^2 + t^2)
        s2 = (1 - t) ** 2 + t**2
        x0_hat = mu + (1 - t) * (z.double() - (1 - t) * mu) / s2
        eps_hat = (z.double() - (1 - t) * x0_hat) / t
        return (eps_hat - x0_hat).float()

    return velocity


def test_sde_preserves_the_data_marginal_of_the_ode():
    mu = 2.0
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(20000, 2, generator=g)
    traj = sample_sde(_linear_velocity(mu), noise, steps=60, noise_level=0.7, generator=g)
    x = traj.sample
    assert abs(x.mean().item() - mu) < 0.05
    assert abs(x.std().item() - 1.0) < 0.08


def test_log_probs_match_torch_distributions():
    mu = 0.5
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(4, 3, 2, generator=g)
    velocity = _linear_velocity(mu)
    traj = sample_sde(velocity, noise, steps=5, shift=3.0, noise_level=0.7, generator=g)
    grid = sde_timesteps(5, 3.0)
    for i in range(5):
        t, t_next = float(grid[i]), float(grid[i + 1])
        x = traj.latents[i].double()
        v = velocity(traj.latents[i], torch.full((4,), t)).double()
        t_den = float(grid[1]) if i == 0 else t
        sigma = 0.7 * math.sqrt(t / (1 - t_den))
        dt = t_next - t
        mean = x + (v + sigma**2 / (2 * t) * (x + (1 - t) * v)) * dt
        dist = torch.distributions.Normal(mean, sigma * math.sqrt(-dt))
        expected = dist.log_prob(traj.latents[i + 1].double()).flatten(1).mean(1)
        torch.testing.assert_close(traj.log_probs[i].double(), expected, rtol=1e-4, atol=1e-4)


def test_replayed_log_prob_equals_the_stored_one_so_the_first_ratio_is_one():
    g = torch.Generator().manual_seed(2)
    net = torch.nn.Linear(4, 4)
    velocity = lambda z, t: net(z) * t[:, None]  # noqa: E731
    traj = sample_sde(velocity, torch.randn(3, 4, generator=g), steps=4, generator=g)
    for i in range(4):
        replay = step_log_prob(velocity, traj, i)
        assert torch.equal(torch.exp(replay - traj.log_probs[i]), torch.ones(3))
    replay = step_log_prob(velocity, traj, 2)
    replay.sum().backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0
