"""Public functional API of the ELBO surrogate: one call, several backends."""

from __future__ import annotations

import torch

from vgrpo.ops.backends import resolve_backend
from vgrpo.ops.checks import check_elbo_inputs, fused_backend_or_torch
from vgrpo.ops.library import elbo_fused
from vgrpo.ops.reference import ElboTerms, elbo_surrogate_reference


def elbo_surrogate(
    v_pred: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    *,
    v_old: torch.Tensor | None = None,
    weighting: str = "adaptive",
    backend: str = "auto",
    check_values: bool = True,
) -> ElboTerms:
    """Per-(sample, pair) ELBO surrogate of V-GRPO, differentiable in v_pred.

    Args:
        v_pred: [N, K, *latent] network velocity at z[n, k] = (1 - t) x0[n] + t noise[k].
        x0: [N, *latent] final generated samples (one action each).
        noise: [K, *latent] group-shared noise, or [N, K, *latent].
        t: [K] or [N, K] timesteps in (0, 1].
        v_old: optional [N, K, *latent] behaviour-policy velocity; adds the `kl` term.
        weighting: "adaptive" (x-prediction mse / sg(mae), the V-GRPO default), or the ablations
            "x", "v", "eps" (plain mse of that parameterisation's error).
        backend: "auto" | "torch" | "cpp" | "triton". "auto" takes the fused op (cpp on CPU, triton
            on CUDA) when it is available, else the reference. The fused ops differentiate v_pred
            only; when x0, noise, t or v_old require grad, "auto" takes the reference.
            Non-contiguous inputs are copied to contiguous memory before the fused op.
        check_values: also check that t lies in (0, 1] and that inputs are finite (one extra read).
    Returns:
        ElboTerms(loss, mse, mae, kl): float32 [N, K] tensors (float64 for float64 inputs); kl is
        None without v_old. log pi(x0) is taken as -loss.mean(1).
    """
    check_elbo_inputs(v_pred, x0, noise, t, v_old, weighting, check_values)
    name = resolve_backend(backend, v_pred.device)
    name = fused_backend_or_torch(name, backend, x0=x0, noise=noise, t=t, v_old=v_old)
    if name == "torch":
        return elbo_surrogate_reference(v_pred, x0, noise, t, v_old, weighting)
    return elbo_fused(v_pred, x0, noise, t, v_old, weighting)
