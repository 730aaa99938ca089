"""Triton kernels of the fused ELBO surrogate (CUDA path; runs on CPU under TRITON_INTERPRET=1).

Import as `vgrpo.kernels.elbo_surrogate` (never a top-level `kernels`). The math is
`vgrpo.ops.reference.elbo_surrogate_reference`; the op registration (schema, fake kernel, autograd)
is `vgrpo.ops.library`. Layout: latents flattened to D and contiguous; v_pred, v_old [N, K, D];
x0 [N, D]; noise [K, D] (shared) or [N, K, D]; t [K] or [N, K] in the accumulation dtype.

Bytes moved (the figure of merit, memory-bound):
    forward  reads v_pred (+ v_old) once, x0 and shared noise once per (n, k) row (L2-resident for a
             group), writes 4 x [N, K] scalars; no [N, K, D] temporaries.
    backward reads v_pred, x0, noise (+ v_old) and writes grad_v_pred once; the error is recomputed.

Forward is two launches: `_elbo_fwd_partial` (grid rows x chunks: each program reduces one chunk of
one row, so a few rows still fill the GPU) and `_elbo_fwd_finish` (grid rows: sums the chunk
partials and applies the weighting).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vgrpo.kernels.common import BLOCK_D, load_x0_noise, row_and_block, row_setup
from vgrpo.ops.checks import WEIGHTING_CODES
from vgrpo.ops.reference import MAE_EPS

WEIGHTING_ADAPTIVE: tl.constexpr = tl.constexpr(WEIGHTING_CODES["adaptive"])
WEIGHTING_V: tl.constexpr = tl.constexpr(WEIGHTING_CODES["v"])
WEIGHTING_EPS: tl.constexpr = tl.constexpr(WEIGHTING_CODES["eps"])
"""Weighting codes the kernels branch on (vgrpo.ops.checks.WEIGHTING_CODES; "x" takes the default)."""


@triton.jit
def _error_scale(t, WEIGHTING: tl.constexpr):
    """c(t): t for adaptive / x, 1 for v, 1 - t for eps."""
    if WEIGHTING == WEIGHTING_V:
        c = t * 0.0 + 1.0
    elif WEIGHTING == WEIGHTING_EPS:
        c = 1.0 - t
    else:
        c = t
    return c


@triton.jit
def _elbo_fwd_partial(
    v_ptr, x0_ptr, noise_ptr, t_ptr, v_old_ptr, partial_ptr,
    K, D, CHUNK, N_CHUNKS,
    WEIGHTING: tl.constexpr, SHARED_NOISE: tl.constexpr, PER_SAMPLE_T: tl.constexpr,
    HAS_OLD: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    chunk = tl.program_id(1)
    x0_off, noise_off, v_off, t = row_setup(row, t_ptr, K, D, SHARED_NOISE, PER_SAMPLE_T)
    acc_ty = t.dtype
    c = _error_scale(t, WEIGHTING)
    s2 = tl.zeros([BLOCK], dtype=acc_ty)
    s1 = tl.zeros([BLOCK], dtype=acc_ty)
    s3 = tl.zeros([BLOCK], dtype=acc_ty)
    begin = chunk * CHUNK
    for start in range(0, CHUNK, BLOCK):
        cols = begin + start + tl.arange(0, BLOCK)
        mask = cols < D
        v = tl.load(v_ptr + v_off + cols, mask=mask, other=0.0).to(acc_ty)
        x, e = load_x0_noise(x0_ptr, noise_ptr, x0_off, noise_off, cols, mask, t)
        err = c * (v - (e - x))
        s2 += err * err
        s1 += tl.abs(err)
        if HAS_OLD:
            vo = tl.load(v_old_ptr + v_off + cols, mask=mask, other=0.0).to(acc_ty)
            dv = t * (v - vo)
            s3 += dv * dv
    out = partial_ptr + (row * N_CHUNKS + chunk) * 3
    tl.store(out + 0, tl.sum(s2, axis=0))
    tl.store(out + 1, tl.sum(s1, axis=0))
    tl.store(out + 2, tl.sum(s3, axis=0))


@triton.jit
def _elbo_fwd_finish(
    partial_ptr, loss_ptr, mse_ptr, mae_ptr, kl_ptr, D, N_CHUNKS,
    WEIGHTING: tl.constexpr, MAE_EPS_: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0)
    acc_ty = loss_ptr.dtype.element_ty
    s2 = tl.zeros([BLOCK_C], dtype=acc_ty)
    s1 = tl.zeros([BLOCK_C], dtype=acc_ty)
    s3 = tl.zeros([BLOCK_C], dtype=acc_ty)
    for start in range(0, N_CHUNKS, BLOCK_C):
        idx = start + tl.arange(0, BLOCK_C)
        mask = idx < N_CHUNKS
        base = partial_ptr + (row * N_CHUNKS + idx) * 3
        s2 += tl.load(base + 0, mask=mask, other=0.0).to(acc_ty)
        s1 += tl.load(base + 1, mask=mask, other=0.0).to(acc_ty)
        s3 += tl.load(base + 2, mask=mask, other=0.0).to(acc_ty)
    mse = tl.sum(s2, axis=0) / D
    mae = tl.sum(s1, axis=0) / D
    if WEIGHTING == WEIGHTING_ADAPTIVE:
        loss = mse / (mae + MAE_EPS_)
    else:
        loss = mse
    tl.store(loss_ptr + row, loss.to(acc_ty))
    tl.store(mse_ptr + row, mse.to(acc_ty))
    tl.store(mae_ptr + row, mae.to(acc_ty))
    tl.store(kl_ptr + row, (tl.sum(s3, axis=0) / D).to(acc_ty))


@triton.jit
def _elbo_bwd(
    g_loss_ptr, g_mse_ptr, g_kl_ptr, v_ptr, x0_ptr, noise_ptr, t_ptr, v_old_ptr, mae_ptr, grad_ptr,
    K, D, N_BLOCKS,
    WEIGHTING: tl.constexpr, SHARED_NOISE: tl.constexpr, PER_SAMPLE_T: tl.constexpr,
    HAS_OLD: tl.constexpr, MAE_EPS_: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row, block = row_and_block(N_BLOCKS)
    x0_off, noise_off, v_off, t = row_setup(row, t_ptr, K, D, SHARED_NOISE, PER_SAMPLE_T)
    acc_ty = t.dtype
    c = _error_scale(t, WEIGHTING)
    g_mse = tl.load(g_mse_ptr + row).to(acc_ty)
    g_loss = tl.load(g_loss_ptr + row).to(acc_ty)
    if WEIGHTING == WEIGHTING_ADAPTIVE:
        mae = tl.load(mae_ptr + row).to(acc_ty)
        g_mse += g_loss / (mae + MAE_EPS_)
    else:
        g_mse += g_loss
    a = 2.0 * c * c * g_mse / D
    cols = block * BLOCK + tl.arange(0, BLOCK)
    mask = cols < D
    v = tl.load(v_ptr + v_off + cols, mask=mask, other=0.0).to(acc_ty)
    x, e = load_x0_noise(x0_ptr, noise_ptr, x0_off, noise_off, cols, mask, t)
    grad = a * (v - (e - x))
    if HAS_OLD:
        b = 2.0 * t * t * tl.load(g_kl_ptr + row).to(acc_ty) / D
        vo = tl.load(v_old_ptr + v_off + cols, mask=mask, other=0.0).to(acc_ty)
        grad += b * (v - vo)
    tl.store(grad_ptr + v_off + cols, grad.to(grad_ptr.dtype.element_ty), mask=mask)


def _num_chunks(rows: int, d: int, device: torch.device) -> int:
    """Chunks per row so that rows * chunks is about 4 programs per SM (1 chunk off-GPU)."""
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    want = max(1, (4 * sms + rows - 1) // rows)
    return max(1, min(want, triton.cdiv(d, BLOCK_D)))


def elbo_fwd(
    v_pred: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    v_old: torch.Tensor | None,
    weighting: int,
    out: tuple[torch.Tensor, ...] | None = None,
    n_chunks: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Launch the forward: (loss, mse, mae, kl), each [N, K] in t's dtype (kl zeros without v_old).

    Inputs flattened and contiguous (see module docstring); `out` optionally gives the four
    preallocated outputs (the tests pass NaN-poisoned ones); `n_chunks` overrides how many
    programs share a row (default: enough to fill the GPU; 1 off-GPU).
    """
    n, k, d = v_pred.shape
    rows = n * k
    if out is None:
        out = tuple(torch.empty(n, k, device=v_pred.device, dtype=t.dtype) for _ in range(4))
    loss, mse, mae, kl = out
    n_chunks = n_chunks or _num_chunks(rows, d, v_pred.device)
    chunk = triton.cdiv(triton.cdiv(d, n_chunks), BLOCK_D) * BLOCK_D
    n_chunks = triton.cdiv(d, chunk)
    partial = torch.empty(rows, n_chunks, 3, device=v_pred.device, dtype=t.dtype)
    _elbo_fwd_partial[(rows, n_chunks)](
        v_pred, x0, noise, t, v_old if v_old is not None else v_pred, partial,
        k, d, chunk, n_chunks,
        WEIGHTING=weighting, SHARED_NOISE=noise.dim() == 2, PER_SAMPLE_T=t.dim() == 2,
        HAS_OLD=v_old is not None, BLOCK=BLOCK_D,
    )  # fmt: skip
    _elbo_fwd_finish[(rows,)](
        partial, loss, mse, mae, kl, d, n_chunks,
        WEIGHTING=weighting, MAE_EPS_=MAE_EPS, BLOCK_C=min(1024, triton.next_power_of_2(n_chunks)),
    )  # fmt: skip
    return loss, mse, mae, kl


def elbo_bwd(
    grad_loss: torch.Tensor,
    grad_mse: torch.Tensor,
    grad_kl: torch.Tensor,
    v_pred: torch.Tensor,
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    v_old: torch.Tensor | None,
    mae: torch.Tensor,
    weighting: int,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Launch the backward: grad wrt v_pred [N, K, D] in v_pred's dtype (mae is stop-gradient)."""
    n, k, d = v_pred.shape
    grad = torch.empty_like(v_pred) if out is None else out
    n_blocks = triton.cdiv(d, BLOCK_D)
    _elbo_bwd[(n * k * n_blocks,)](
        grad_loss, grad_mse, grad_kl, v_pred, x0, noise, t,
        v_old if v_old is not None else v_pred, mae, grad, k, d, n_blocks,
        WEIGHTING=weighting, SHARED_NOISE=noise.dim() == 2, PER_SAMPLE_T=t.dim() == 2,
        HAS_OLD=v_old is not None, MAE_EPS_=MAE_EPS, BLOCK=BLOCK_D,
    )  # fmt: skip
    return grad
