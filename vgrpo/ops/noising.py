"""Public functional API of the group-shared noising op."""

from __future__ import annotations

import torch

from vgrpo.ops.backends import resolve_backend
from vgrpo.ops.checks import check_noising_inputs, fused_backend_or_torch
from vgrpo.ops.library import noise_latents_fused
from vgrpo.ops.reference import noise_latents_reference


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
