"""The contract of the fused ops, defined once for every backend and both languages.

- `WEIGHTING_CODES`: each weighting's name and the int the kernels receive (the registry of valid
  weightings; `WEIGHTINGS` is its names).
- `SCHEMAS`: the schemas of `vgrpo::elbo_fwd`, `vgrpo::elbo_bwd`, `vgrpo::noise_latents`.
  csrc/contract.h is generated from these two tables (`python -m vgrpo.ops.contract_header`), and
  tests/test_ops_contract.py fails when it differs; the Triton kernels import the codes.
- `check_elbo_inputs` / `check_noising_inputs`: every backend (torch reference, C++, Triton) is
  reached through them, so a bad call gets the same message, naming the argument and the expected
  shape, whichever backend would have run.

Metadata checks (shape, dtype, device) are free and always eager. Value checks (t in (0, 1],
finiteness) are skipped while torch.compile traces; `elbo_surrogate`'s `check_values` picks how
they are paid for (see `check_elbo_values` and `check_terms_finite`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

WEIGHTING_CODES = {"adaptive": 0, "x": 1, "v": 2, "eps": 3}
"""Weighting name -> the int it is passed as to the kernels (codes run 0, 1, ... without gaps)."""
WEIGHTINGS = tuple(WEIGHTING_CODES)

SCHEMAS = {
    "elbo_fwd": "(Tensor v_pred, Tensor x0, Tensor noise, Tensor t, Tensor? v_old, int weighting) "
    "-> (Tensor loss, Tensor mse, Tensor mae, Tensor kl)",
    "elbo_bwd": "(Tensor grad_loss, Tensor grad_mse, Tensor grad_kl, Tensor v_pred, Tensor x0, "
    "Tensor noise, Tensor t, Tensor? v_old, Tensor mae, int weighting) -> Tensor",
    "noise_latents": "(Tensor x0, Tensor noise, Tensor t, ScalarType out_dtype) -> Tensor",
}
"""Op name (namespace `vgrpo`) -> its schema after the name."""


@dataclass(frozen=True)
class ElboShapes:
    """Problem size after flattening the latent dimensions.

    n: samples; k: timestep-noise pairs per sample; d: latent elements per sample;
    shared_noise: noise is [K, D] (one draw for all samples) rather than [N, K, D];
    per_sample_t: t is [N, K] rather than [K].
    """

    n: int
    k: int
    d: int
    shared_noise: bool
    per_sample_t: bool


def _dims(*sizes: int) -> str:
    return "[" + ", ".join(str(s) for s in sizes) + "]"


def _shape(t: torch.Tensor) -> str:
    return _dims(*t.shape)


def check_elbo_inputs(
    v_pred: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    v_old: torch.Tensor | None = None,
    weighting: str = "adaptive",
    check_values: bool | None = None,
) -> ElboShapes:
    """Validate the arguments of `elbo_surrogate` and return the flattened problem size.

    Expected shapes: v_pred [N, K, *latent], x0 [N, *latent], noise [K, *latent] or
    [N, K, *latent], t [K] or [N, K] with values in (0, 1], v_old like v_pred.
    Raises ValueError / TypeError naming the offending argument. Values are checked as
    `check_elbo_values(check_values, ...)` says.
    """
    _check_are_tensors(v_pred=v_pred, x0=x0, noise=noise, t=t)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if v_pred.dim() < 3:
        raise ValueError(
            f"v_pred must be [N, K, *latent] with at least one latent dim, got shape {_shape(v_pred)}"
        )
    _check_floating("v_pred", v_pred)
    n, k = v_pred.shape[0], v_pred.shape[1]
    latent = tuple(v_pred.shape[2:])
    _check_non_empty("v_pred", v_pred)

    if tuple(x0.shape) != (n, *latent):
        raise ValueError(f"x0 must be [N, *latent] = {_dims(n, *latent)}, got {_shape(x0)}")
    shared_noise = _noise_is_shared(noise, n, k, latent)
    if tuple(t.shape) == (k,):
        per_sample_t = False
    elif tuple(t.shape) == (n, k):
        per_sample_t = True
    else:
        raise ValueError(f"t must be [K] = [{k}] or [N, K] = [{n}, {k}], got {_shape(t)}")
    if v_old is not None:
        if not isinstance(v_old, torch.Tensor):
            raise TypeError(f"v_old must be a torch.Tensor or None, got {type(v_old).__name__}")
        if v_old.shape != v_pred.shape:
            raise ValueError(f"v_old must have v_pred's shape {_shape(v_pred)}, got {_shape(v_old)}")

    others = {"x0": x0, "noise": noise} | ({"v_old": v_old} if v_old is not None else {})
    _check_dtypes_and_devices("v_pred", v_pred, t, **others)

    check_elbo_values(check_values, v_pred, x0, noise, t, v_old)

    return ElboShapes(n=n, k=k, d=math.prod(latent), shared_noise=shared_noise, per_sample_t=per_sample_t)


def check_noising_inputs(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> None:
    """Validate the arguments of `noise_latents`.

    Expected shapes: x0 [N, *latent], noise [K, *latent] or [N, K, *latent], t [K] or [N, K] with
    values in (0, 1] (checked unless torch.compile traces). Raises ValueError / TypeError naming
    the offending argument, in the words `check_elbo_inputs` uses.
    """
    _check_are_tensors(x0=x0, noise=noise, t=t)
    if x0.dim() < 2:
        raise ValueError(f"x0 must be [N, *latent], got shape {_shape(x0)}")
    _check_floating("x0", x0)
    _check_non_empty("x0", x0)
    n, latent = x0.shape[0], tuple(x0.shape[1:])
    if t.dim() not in (1, 2) or (t.dim() == 2 and t.shape[0] != n):
        raise ValueError(f"t must be [K] or [N, K] with N = {n}, got shape {_shape(t)}")
    _noise_is_shared(noise, n, t.shape[-1], latent)
    _check_dtypes_and_devices("x0", x0, t, noise=noise)
    if not torch.compiler.is_compiling():
        check_t_values(t)


def _check_are_tensors(**tensors: object) -> None:
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")


def _check_floating(name: str, tensor: torch.Tensor) -> None:
    if tensor.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating tensor (fp16/bf16/fp32/fp64), got {tensor.dtype}")


def _check_non_empty(name: str, tensor: torch.Tensor) -> None:
    if tensor.numel() == 0:
        raise ValueError(f"{name} must be non-empty, got shape {_shape(tensor)}")


def _noise_is_shared(noise: torch.Tensor, n: int, k: int, latent: tuple[int, ...]) -> bool:
    """True for noise [K, *latent] (one draw shared by the N samples), False for [N, K, *latent]."""
    if tuple(noise.shape) == (k, *latent):
        return True
    if tuple(noise.shape) == (n, k, *latent):
        return False
    raise ValueError(
        f"noise must be [K, *latent] = {_dims(k, *latent)} (shared) or "
        f"[N, K, *latent] = {_dims(n, k, *latent)}, got {_shape(noise)}"
    )


def _check_dtypes_and_devices(
    main_name: str, main: torch.Tensor, t: torch.Tensor, **others: torch.Tensor
) -> None:
    """`others` in `main`'s dtype, t floating (any precision), and all of them on `main`'s device."""
    for name, tensor in others.items():
        if tensor.dtype != main.dtype:
            raise TypeError(f"{name} must have {main_name}'s dtype {main.dtype}, got {tensor.dtype}")
    _check_floating("t", t)
    for name, tensor in (others | {"t": t}).items():
        if tensor.device != main.device:
            raise ValueError(f"{name} is on {tensor.device} but {main_name} is on {main.device}")


def check_elbo_values(
    check_values: bool | None,
    v_pred: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    v_old: torch.Tensor | None,
) -> None:
    """Eager value checks, before any kernel runs (none while torch.compile traces).

    check_values True: t in (0, 1] and every input finite (one extra read of the inputs; on CUDA a
    host sync per tensor). None: only t, and only when t is on the CPU (K or N * K scalars, no
    sync); input finiteness is then left to `check_terms_finite` after the kernel. False: none.
    """
    if check_values is False or torch.compiler.is_compiling():
        return
    if check_values or t.device.type == "cpu":
        check_t_values(t)
    if check_values:
        check_finite(v_pred=v_pred, x0=x0, noise=noise, v_old=v_old)


def check_finite(**tensors: torch.Tensor | None) -> None:
    """Raise naming the first of `tensors` that holds a NaN or inf (None entries are skipped)."""
    for name, tensor in tensors.items():
        if tensor is not None and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name} contains NaN or inf values")


def check_terms_finite(mse: torch.Tensor, mae: torch.Tensor, kl: torch.Tensor | None, **inputs) -> None:
    """Lazy finiteness check from the reductions the kernel already did: no extra pass when all is well.

    mse, mae, kl: [N, K] terms of one call. A NaN or inf in any input makes the sums of its rows
    non-finite (mae sums |err| >= 0, so nothing cancels), so finite terms prove finite inputs.
    Only when a term is not finite are the `inputs` scanned, to name the bad one; if none is bad
    (finite values whose squares overflow), the inf is left to propagate to the loss.
    """
    terms = [mse, mae] + ([kl] if kl is not None else [])
    if all(bool(torch.isfinite(term).all()) for term in terms):
        return
    check_finite(**inputs)


def check_t_values(t: torch.Tensor) -> None:
    """Raise if any timestep is non-finite or outside (0, 1]."""
    if not bool(torch.isfinite(t).all()):
        raise ValueError("t contains NaN or inf values; timesteps must lie in (0, 1]")
    if not bool(((t > 0) & (t <= 1)).all()):
        digits = 17 if t.dtype == torch.float64 else 9  # enough to tell 1.0000001 from 1
        raise ValueError(
            f"t must lie in (0, 1], got min {t.min().item():.{digits}g}, max {t.max().item():.{digits}g}"
        )


def fused_backend_or_torch(name: str, requested: str, **no_grad_args: torch.Tensor | None) -> str:
    """Keep the resolved backend `name` unless a fused op would drop a gradient.

    The fused ops differentiate v_pred only. If one of `no_grad_args` requires grad (with grad
    mode on), "auto" falls back to the reference ("torch"); an explicit fused backend raises,
    naming the argument.
    """
    if name == "torch" or not torch.is_grad_enabled():
        return name
    for arg, tensor in no_grad_args.items():
        if tensor is not None and tensor.requires_grad:
            if requested == "auto":
                return "torch"
            raise ValueError(
                f"{arg} requires grad, but backend {requested!r} differentiates v_pred only; "
                "use backend='torch' or detach it"
            )
    return name
