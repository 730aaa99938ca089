"""Public functional API of the ELBO surrogate: one call, several backends."""

from __future__ import annotations

import torch

from vgrpo.ops.backends import resolve_backend
from vgrpo.ops.checks import check_elbo_inputs, check_terms_finite, fused_backend_or_torch
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
    check_values: bool | None = None,
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
        check_values: how bad values are caught. None (default, the fast call): no extra pass
            over the inputs and no device sync. On CPU, t's K scalars are checked to lie in
            (0, 1] before the kernel, and a NaN / inf in an input is caught from the kernel's own
            [N, K] sums (all finite prove the inputs finite; otherwise the inputs are scanned to
            name the bad one and ValueError is raised after the forward). On CUDA nothing is
            checked (checking needs a host sync): a NaN or inf propagates to the loss. True: t and
            every input are checked before the kernel (one extra read; host syncs on CUDA).
            False: no value checks at all. torch.compile traces skip value checks.
    Returns:
        ElboTerms(loss, mse, mae, kl): float32 [N, K] tensors (float64 for float64 inputs); kl is
        None without v_old. log pi(x0) is taken as -loss.mean(1).
    """
    check_elbo_inputs(v_pred, x0, noise, t, v_old, weighting, check_values)
    name = resolve_backend(backend, v_pred.device)
    name = fused_backend_or_torch(name, backend, x0=x0, noise=noise, t=t, v_old=v_old)
    if name == "torch":
        terms = elbo_surrogate_reference(v_pred, x0, noise, t, v_old, weighting)
    else:
        terms = elbo_fused(v_pred, x0, noise, t, v_old, weighting)
    if check_values is None and v_pred.device.type == "cpu" and not torch.compiler.is_compiling():
        check_terms_finite(terms.mse, terms.mae, terms.kl, v_pred=v_pred, x0=x0, noise=noise, v_old=v_old)
    return terms
