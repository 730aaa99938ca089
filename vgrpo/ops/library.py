"""Registration of the fused ops `vgrpo::elbo_fwd`, `vgrpo::elbo_bwd`, `vgrpo::noise_latents`.

- Schema and CPU kernel: the C++ library `vgrpo._C` (csrc/elbo_surrogate.cpp, OpenMP), loaded here;
  it defines the schemas of `vgrpo.ops.checks.SCHEMAS` (through the generated csrc/contract.h).
  When it was not built (VGRPO_BUILD_CPP=0) or does not load, the schemas are defined from
  `SCHEMAS` here instead, backend "cpp" is unavailable and "auto" uses the PyTorch reference on
  CPU (logged once).
- CUDA kernel: the Triton launchers of `vgrpo.kernels` (imported lazily, on first CUDA call).
- Fake (meta) kernels, so torch.compile(fullgraph=True) traces callers without graph breaks.
- Autograd of `elbo_fwd` (grad wrt v_pred only; mae is stop-gradient) through `elbo_bwd`, which
  recomputes the error from the inputs instead of saving [N, K, D] temporaries.

`elbo_fused` and `noise_latents_fused` are the differentiable entry points used by
`vgrpo.ops.elbo` / `vgrpo.ops.noising`; they flatten the latents and make inputs contiguous.
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from vgrpo.ops.backends import BACKEND_AVAILABLE
from vgrpo.ops.checks import SCHEMAS, WEIGHTING_CODES
from vgrpo.ops.reference import ElboTerms, compute_dtype

log = logging.getLogger(__name__)

def _load_cpp() -> str | None:
    """Load vgrpo._C; return None on success, else the reason it is unavailable."""
    try:
        spec = importlib.util.find_spec("vgrpo._C")
    except (ImportError, ValueError) as exc:  # pragma: no cover - broken install
        return f"cannot locate vgrpo._C ({exc})"
    if spec is None or spec.origin is None:
        return "vgrpo._C was not built (installed with VGRPO_BUILD_CPP=0?)"
    try:
        torch.ops.load_library(spec.origin)
    except (OSError, RuntimeError) as exc:
        return f"cannot load {spec.origin}: {exc}"
    return None


CPP_UNAVAILABLE_REASON = _load_cpp()
CPP_LOADED = CPP_UNAVAILABLE_REASON is None
if not CPP_LOADED:
    log.warning(
        "vgrpo: C++ ELBO op unavailable (%s); backend 'auto' uses the PyTorch reference on CPU",
        CPP_UNAVAILABLE_REASON,
    )
    _lib = torch.library.Library("vgrpo", "FRAGMENT")
    for _name, _schema in SCHEMAS.items():
        if not hasattr(torch.ops.vgrpo, _name):
            _lib.define(_name + _schema)


def triton_importable() -> bool:
    """Whether triton can be imported (without importing it)."""
    return importlib.util.find_spec("triton") is not None


BACKEND_AVAILABLE["cpp"] = lambda device: CPP_LOADED and device.type == "cpu"
BACKEND_AVAILABLE["triton"] = lambda device: device.type == "cuda" and triton_importable()


# ----------------------------------------------------------------------------------------------
# CUDA kernels: Triton
# ----------------------------------------------------------------------------------------------
@torch.library.impl("vgrpo::elbo_fwd", "CUDA")
def _elbo_fwd_cuda(v_pred, x0, noise, t, v_old, weighting):
    from vgrpo.kernels.elbo_surrogate import elbo_fwd

    return elbo_fwd(v_pred, x0, noise, t, v_old, weighting)


@torch.library.impl("vgrpo::elbo_bwd", "CUDA")
def _elbo_bwd_cuda(grad_loss, grad_mse, grad_kl, v_pred, x0, noise, t, v_old, mae, weighting):
    from vgrpo.kernels.elbo_surrogate import elbo_bwd

    return elbo_bwd(grad_loss, grad_mse, grad_kl, v_pred, x0, noise, t, v_old, mae, weighting)


@torch.library.impl("vgrpo::noise_latents", "CUDA")
def _noise_latents_cuda(x0, noise, t, out_dtype):
    from vgrpo.kernels.noising import noise_latents

    return noise_latents(x0, noise, t, out_dtype)


# ----------------------------------------------------------------------------------------------
# Fake kernels (shapes and dtypes only) for torch.compile / meta tensors
# ----------------------------------------------------------------------------------------------
@torch.library.register_fake("vgrpo::elbo_fwd")
def _elbo_fwd_fake(v_pred, x0, noise, t, v_old, weighting):
    n, k = v_pred.shape[:2]
    return tuple(v_pred.new_empty((n, k), dtype=t.dtype) for _ in range(4))


@torch.library.register_fake("vgrpo::elbo_bwd")
def _elbo_bwd_fake(grad_loss, grad_mse, grad_kl, v_pred, x0, noise, t, v_old, mae, weighting):
    return torch.empty_like(v_pred)


@torch.library.register_fake("vgrpo::noise_latents")
def _noise_latents_fake(x0, noise, t, out_dtype):
    return x0.new_empty((x0.shape[0], t.shape[-1], x0.shape[1]), dtype=out_dtype)


# ----------------------------------------------------------------------------------------------
# Autograd: d/dv_pred of loss, mse, kl; mae is stop-gradient
# ----------------------------------------------------------------------------------------------
def _elbo_setup_context(ctx, inputs, output):
    v_pred, x0, noise, t, v_old, weighting = inputs
    ctx.save_for_backward(v_pred, x0, noise, t, v_old, output[2])
    ctx.weighting = weighting
    ctx.mark_non_differentiable(output[2])


def _elbo_backward(ctx, grad_loss, grad_mse, grad_mae, grad_kl):
    v_pred, x0, noise, t, v_old, mae = ctx.saved_tensors
    grad_v = None
    if ctx.needs_input_grad[0]:
        grads = [
            torch.zeros_like(mae) if g is None else g.contiguous()
            for g in (grad_loss, grad_mse, grad_kl)
        ]
        grad_v = torch.ops.vgrpo.elbo_bwd(*grads, v_pred, x0, noise, t, v_old, mae, ctx.weighting)
    return grad_v, None, None, None, None, None


torch.library.register_autograd(
    "vgrpo::elbo_fwd", _elbo_backward, setup_context=_elbo_setup_context
)


# ----------------------------------------------------------------------------------------------
# Entry points used by the public functional API
# ----------------------------------------------------------------------------------------------
def _flat(x: torch.Tensor, lead: int) -> torch.Tensor:
    """Contiguous view (or copy, if non-contiguous) with the latent dims after `lead` flattened."""
    return x.contiguous().reshape(*x.shape[:lead], -1)


def elbo_fused(
    v_pred: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    v_old: torch.Tensor | None,
    weighting: str,
) -> ElboTerms:
    """ELBO terms through the registered op; inputs already validated by check_elbo_inputs.

    Non-contiguous inputs are copied to contiguous memory first (one extra read and write).
    Differentiable in v_pred only.
    """
    shared = noise.dim() == x0.dim()
    loss, mse, mae, kl = torch.ops.vgrpo.elbo_fwd(
        _flat(v_pred, 2),
        _flat(x0, 1),
        _flat(noise, 1 if shared else 2),
        t.to(compute_dtype(v_pred.dtype)).contiguous(),
        None if v_old is None else _flat(v_old, 2),
        WEIGHTING_CODES[weighting],
    )
    return ElboTerms(loss=loss, mse=mse, mae=mae, kl=kl if v_old is not None else None)


def noise_latents_fused(
    x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, out_dtype: torch.dtype | None
) -> torch.Tensor:
    """z [N, K, *latent] through the registered op; inputs already validated."""
    n, latent = x0.shape[0], x0.shape[1:]
    shared = noise.dim() == x0.dim()
    z = torch.ops.vgrpo.noise_latents(
        _flat(x0, 1),
        _flat(noise, 1 if shared else 2),
        t.to(compute_dtype(x0.dtype)).contiguous(),
        out_dtype or x0.dtype,
    )
    return z.reshape(n, t.shape[-1], *latent)
