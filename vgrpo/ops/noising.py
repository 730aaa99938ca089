"""Public functional API of the group-shared noising op."""

from __future__ import annotations

import torch

from vgrpo.ops.backends import resolve_backend
from vgrpo.ops.checks import FLOAT_DTYPES, check_t_values, fused_backend_or_torch
from vgrpo.ops.library import noise_latents_fused
from vgrpo.ops.reference import noise_latents_reference


def check_noising_inputs(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> None:
    """Validate noise_latents arguments; errors name the argument and the expected shape."""
    if x0.dim() < 2:
        raise ValueError(f"x0 must be [N, *latent], got shape {list(x0.shape)}")
    if x0.dtype not in FLOAT_DTYPES:
        raise TypeError(f"x0 must be a floating tensor, got {x0.dtype}")
    n, latent = x0.shape[0], tuple(x0.shape[1:])
    if t.dim() not in (1, 2) or (t.dim() == 2 and t.shape[0] != n):
        raise ValueError(f"t must be [K] or [N, K] with N = {n}, got shape {list(t.shape)}")
    k = t.shape[-1]
    if tuple(noise.shape) not in ((k, *latent), (n, k, *latent)):
        raise ValueError(
            f"noise must be [K, *latent] = {[k, *latent]} or [N, K, *latent] = {[n, k, *latent]}, "
            f"got {list(noise.shape)}"
        )
    if noise.dtype != x0.dtype:
        raise TypeError(f"noise must have x0's dtype {x0.dtype}, got {noise.dtype}")
    for name, tensor in (("noise", noise), ("t", t)):
        if tensor.device != x0.device:
            raise ValueError(f"{name} is on {tensor.device} but x0 is on {x0.device}")
    if not torch.compiler.is_compiling():
        check_t_values(t)


def noise_latents(
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    *,
    out_dtype: torch.dtype | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Model inputs for the whole timestep-noise batch: z[n, k] = (1 - t) x0[n] + t noise[k].

    Args:
        x0: [N, *latent]; noise: [K, *latent] (shared) or [N, K, *latent]; t: [K] or [N, K].
        out_dtype: the model's dtype (default x0.dtype).
        backend: "auto" | "torch" | "cpp" | "triton". The fused op is not differentiable; when x0,
            noise or t require grad, "auto" takes the reference.
    Returns:
        z: [N, K, *latent], contiguous, in out_dtype.
    """
    check_noising_inputs(x0, noise, t)
    name = resolve_backend(backend, x0.device)
    name = fused_backend_or_torch(name, backend, x0=x0, noise=noise, t=t)
    if name == "torch":
        return noise_latents_reference(x0, noise, t, out_dtype)
    return noise_latents_fused(x0, noise, t, out_dtype)
