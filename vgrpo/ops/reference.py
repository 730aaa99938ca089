"""Plain PyTorch reference of the ELBO surrogate and the group-shared noising.

This is the ground truth: tests and benchmarks of every fast path (C++, Triton, compiled) import
these functions, and there is no second copy of the math anywhere.

Notation (rectified flow, time runs from data t = 0 to noise t = 1):
    z      = (1 - t) x0 + t eps                      noised input of the network
    u      = v_pred - (eps - x0)                     velocity error
    x_pred = z - t v_pred,  x_pred - x0 = -t u       x-prediction error
The per-(sample, pair) terms reduce over the D latent elements with a mean:
    adaptive (default): mse = mean (t u)^2, mae = sg(mean |t u|), loss = mse / (mae + MAE_EPS)
    x:   loss = mse = mean (t u)^2        (x-prediction, no adaptive weighting)
    v:   loss = mse = mean u^2            (plain flow-matching / v-prediction loss)
    eps: loss = mse = mean ((1 - t) u)^2  (eps-prediction error, eps_pred = z + (1 - t) v_pred)
mse and mae are always those of the chosen parameterisation's error; kl (when v_old is given) is
mean (x_pred - x_old)^2 = mean (t (v_pred - v_old))^2, in x-space for every weighting.
Arithmetic is float32 (float64 when the inputs are float64), whatever the input dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

MAE_EPS = 1e-6
"""Added to the stop-gradient mae before dividing, so an exact prediction gives loss 0, not NaN."""


class ElboTerms(NamedTuple):
    """Per-(sample, pair) surrogate terms, each float32 [N, K] (float64 for float64 inputs)."""

    loss: torch.Tensor
    mse: torch.Tensor
    mae: torch.Tensor
    kl: torch.Tensor | None = None


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype for inputs of `dtype`: float64 stays float64, all else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def error_scale(t: torch.Tensor, weighting: str) -> torch.Tensor:
    """Factor c(t) with error = c(t) * u for each parameterisation (sign dropped: it is squared)."""
    if weighting in ("adaptive", "x"):
        return t
    if weighting == "v":
        return torch.ones_like(t)
    if weighting == "eps":
        return 1.0 - t
    raise ValueError(f"unknown weighting {weighting!r}")


def _broadcast_pairs(x0, noise, t, n, k, ndim_latent, acc):
    """Return x0 as [N, 1, *latent], noise as [1|N, K, *latent], t as [1|N, K, 1...] in acc dtype."""
    x0 = x0.to(acc).unsqueeze(1)
    noise = noise.to(acc)
    if noise.dim() == ndim_latent + 1:  # shared [K, *latent]
        noise = noise.unsqueeze(0)
    t = t.to(acc)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    t = t.reshape(t.shape[0], k, *([1] * ndim_latent))
    return x0, noise, t


def elbo_surrogate_reference(
    v_pred: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    v_old: torch.Tensor | None = None,
    weighting: str = "adaptive",
) -> ElboTerms:
    """Per-(sample, pair) ELBO surrogate terms; differentiable in v_pred.

    Args:
        v_pred: [N, K, *latent] velocity predicted at z[n, k].
        x0: [N, *latent] final samples (the "action").
        noise: [K, *latent] shared across samples, or [N, K, *latent].
        t: [K] or [N, K] timesteps in (0, 1].
        v_old: optional [N, K, *latent] behaviour-policy velocity (for the KL term).
        weighting: "adaptive" | "x" | "v" | "eps" (see module docstring).
    Returns:
        ElboTerms of [N, K] tensors in float32 (float64 for float64 inputs).
    """
    n, k = v_pred.shape[:2]
    ndim_latent = v_pred.dim() - 2
    acc = compute_dtype(v_pred.dtype)
    x0_b, noise_b, t_b = _broadcast_pairs(x0, noise, t, n, k, ndim_latent, acc)
    latent_dims = tuple(range(2, 2 + ndim_latent))

    u = v_pred.to(acc) - (noise_b - x0_b)
    err = error_scale(t_b, weighting) * u
    mse = err.square().mean(dim=latent_dims)
    mae = err.detach().abs().mean(dim=latent_dims)
    loss = mse / (mae + MAE_EPS) if weighting == "adaptive" else mse
    kl = None
    if v_old is not None:
        kl = (t_b * (v_pred.to(acc) - v_old.to(acc))).square().mean(dim=latent_dims)
    return ElboTerms(loss=loss, mse=mse, mae=mae, kl=kl)


def noise_latents_reference(
    x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Model inputs for every (sample, pair): z[n, k] = (1 - t) x0[n] + t noise[k].

    Args:
        x0: [N, *latent]; noise: [K, *latent] or [N, K, *latent]; t: [K] or [N, K].
        out_dtype: dtype of z (the model's dtype); defaults to x0.dtype.
    Returns:
        z: [N, K, *latent] in out_dtype, computed in float32 (float64 for float64 inputs).
    """
    n = x0.shape[0]
    k = t.shape[-1]
    ndim_latent = x0.dim() - 1
    acc = compute_dtype(x0.dtype)
    x0_b, noise_b, t_b = _broadcast_pairs(x0, noise, t, n, k, ndim_latent, acc)
    z = (1.0 - t_b) * x0_b + t_b * noise_b
    return z.expand(n, k, *x0.shape[1:]).to(out_dtype or x0.dtype).contiguous()
