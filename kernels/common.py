"""Triton helpers shared by the kernels of vgrpo.kernels (row layout, block indexing, input loads).

Layout (latents flattened to D, contiguous): x0 [N, D]; noise [K, D] (shared) or [N, K, D]; rows
r = n * K + k of the [N, K, D] tensors (v_pred, v_old, z); t [K] or [N, K] in the accumulation dtype.
"""

from __future__ import annotations

import triton
import triton.language as tl

BLOCK_D = 1024
"""Elements one program handles per loop step."""


@triton.jit
def row_setup(row, t_ptr, K, D, SHARED_NOISE: tl.constexpr, PER_SAMPLE_T: tl.constexpr):
    """Offsets of row (n, k) in x0, noise and v_pred / z (int64: N*K*D may exceed 2^31), and its
    timestep t (whose dtype is the accumulation dtype)."""
    n = row // K
    k = row % K
    x0_off = n.to(tl.int64) * D
    row_off = row.to(tl.int64) * D
    if SHARED_NOISE:
        noise_off = k.to(tl.int64) * D
    else:
        noise_off = row_off
    if PER_SAMPLE_T:
        t = tl.load(t_ptr + row)
    else:
        t = tl.load(t_ptr + k)
    return x0_off, noise_off, row_off, t


@triton.jit
def row_and_block(N_BLOCKS):
    """(row, block of BLOCK elements) of this program on a 1-D grid of rows * N_BLOCKS programs
    (grid dimensions beyond the first are limited to 65535 on CUDA)."""
    pid = tl.program_id(0).to(tl.int64)
    return (pid // N_BLOCKS).to(tl.int32), pid % N_BLOCKS


@triton.jit
def load_x0_noise(x0_ptr, noise_ptr, x0_off, noise_off, cols, mask, t):
    """One block of x0[n] and noise[k] (or noise[n, k]) in t's dtype."""
    x = tl.load(x0_ptr + x0_off + cols, mask=mask, other=0.0).to(t.dtype)
    e = tl.load(noise_ptr + noise_off + cols, mask=mask, other=0.0).to(t.dtype)
    return x, e
