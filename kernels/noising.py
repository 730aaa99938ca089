"""Triton kernel of the group-shared noising z[n, k] = (1 - t) x0[n] + t noise[k] (CUDA path).

Import as `vgrpo.kernels.noising`. Reads x0 [N, D] and noise [K, D] (or [N, K, D]) and writes the
whole [N, K, D] batch of model inputs once, in the model's dtype, with fp32 arithmetic (fp64 for
fp64 inputs). Reference: `vgrpo.ops.reference.noise_latents_reference`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vgrpo.kernels.common import BLOCK_D, load_x0_noise, row_and_block, row_setup


@triton.jit
def _noise_latents(
    x0_ptr, noise_ptr, t_ptr, z_ptr, K, D, N_BLOCKS,
    SHARED_NOISE: tl.constexpr, PER_SAMPLE_T: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row, block = row_and_block(N_BLOCKS)
    x0_off, noise_off, z_off, t = row_setup(row, t_ptr, K, D, SHARED_NOISE, PER_SAMPLE_T)
    cols = block * BLOCK + tl.arange(0, BLOCK)
    mask = cols < D
    x, e = load_x0_noise(x0_ptr, noise_ptr, x0_off, noise_off, cols, mask, t)
    z = (1.0 - t) * x + t * e
    if z_ptr.dtype.element_ty == tl.bfloat16:
        z = z.to(tl.float32)  # fp64 -> bf16 has no direct conversion in the interpreter
    tl.store(z_ptr + z_off + cols, z.to(z_ptr.dtype.element_ty), mask=mask)


def noise_latents(
    x0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    out_dtype: torch.dtype,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Launch the noising: x0 [N, D], noise [K, D] or [N, K, D], t [K] or [N, K] (accumulation
    dtype), all contiguous; returns z [N, K, D] in out_dtype (or writes the preallocated `out`)."""
    n, d = x0.shape
    k = t.shape[-1]
    z = torch.empty(n, k, d, device=x0.device, dtype=out_dtype) if out is None else out
    n_blocks = triton.cdiv(d, BLOCK_D)
    _noise_latents[(n * k * n_blocks,)](
        x0, noise, t, z, k, d, n_blocks,
        SHARED_NOISE=noise.dim() == 2, PER_SAMPLE_T=t.dim() == 2, BLOCK=BLOCK_D,
    )  # fmt: skip
    return z
