"""Per-pass profile of the fused ELBO op on CPU: where the time of forward + backward goes.

    python -m bench.profile_elbo_passes [--n 24] [--rounds 15] [--threads 1 2]

At FLUX 1024 (4096 x 64 latents, K = 4) with N samples, float32, it times in interleaved rounds
(so a change of machine load hits every row alike) and prints median ms and GB/s of:
  - bounds: `sum` of v_pred (read only) and `copy_` into a preallocated buffer of each pass's bytes;
  - the op's two passes called directly: `elbo_fwd` (reads v_pred, x0, noise) and `elbo_bwd`
    (reads them again, writes a fresh gradient), per thread count;
  - `empty + fill` of a v_pred-size tensor against `fill` of a preallocated one: the page-fault cost
    of a fresh output (4 KiB pages: the op itself advises its gradient onto 2 MiB pages);
  - `elbo_fwd` then `elbo_bwd`, as autograd runs them;
  - `elbo_fwd` of one cache-resident sample (K x D block), N times, on one thread: what the forward
    would cost in a one-pass kernel that reduces a sample and writes its gradient while the sample
    is still in cache (possible for V-GRPO, whose upstream gradient of a sample depends only on its
    own K surrogates, but only with the policy loss inside the op).
"""

from __future__ import annotations

import argparse
import time

import torch

import vgrpo.ops.library  # noqa: F401  (registers torch.ops.vgrpo)


def _median_ms(samples: list[float]) -> float:
    return sorted(samples)[len(samples) // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, torch.get_num_threads()])
    args = parser.parse_args()
    n, k, d = args.n, 4, 4096 * 64
    g = torch.Generator().manual_seed(0)
    v = torch.randn(n, k, d, generator=g)
    x0, noise = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    t = (torch.arange(k) + 0.5) / k
    g_loss, zeros = torch.randn(n, k, generator=g), torch.zeros(n, k)
    mae = torch.ops.vgrpo.elbo_fwd(v, x0, noise, t, None, 0)[2]
    fwd_bytes = (n * k * d + n * d + k * d) * 4
    bwd_bytes = fwd_bytes + n * k * d * 4
    src, dst = torch.randn(bwd_bytes // 8), torch.empty(bwd_bytes // 8)
    flat = v.view(-1)
    filled = torch.empty_like(v)

    rows: dict[str, tuple[int, object]] = {  # name: (bytes moved, callable)
        "sum of v_pred (read bound)": (n * k * d * 4, lambda: flat.sum()),
        "copy_ of the backward's bytes": (bwd_bytes, lambda: dst.copy_(src)),
        "fill, preallocated": (n * k * d * 4, lambda: filled.fill_(1.0)),
        "empty + fill (fresh pages)": (n * k * d * 4, lambda: torch.empty_like(v).fill_(1.0)),
    }
    for threads in args.threads:
        rows[f"elbo_fwd, {threads} thread(s)"] = (
            fwd_bytes,
            (threads, lambda: torch.ops.vgrpo.elbo_fwd(v, x0, noise, t, None, 0)),
        )
        rows[f"elbo_bwd, {threads} thread(s)"] = (
            bwd_bytes,
            (threads, lambda: torch.ops.vgrpo.elbo_bwd(g_loss, zeros, zeros, v, x0, noise, t, None, mae, 0)),
        )
    def both_passes() -> torch.Tensor:
        loss, _, mae_, _ = torch.ops.vgrpo.elbo_fwd(v, x0, noise, t, None, 0)
        return torch.ops.vgrpo.elbo_bwd(loss, zeros, zeros, v, x0, noise, t, None, mae_, 0)

    rows["elbo_fwd then elbo_bwd"] = (fwd_bytes + bwd_bytes, both_passes)
    v1, x1 = v[:1].clone(), x0[:1].clone()
    rows["elbo_fwd of one cached sample x N, 1 thread"] = (
        fwd_bytes,
        (1, lambda: [torch.ops.vgrpo.elbo_fwd(v1, x1, noise, t, None, 0) for _ in range(n)]),
    )
    default_threads = torch.get_num_threads()
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds + 1):  # the first round warms up
        for name, (_, call) in rows.items():
            threads, fn = call if isinstance(call, tuple) else (default_threads, call)
            torch.set_num_threads(threads)
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    torch.set_num_threads(default_threads)
    print(f"FLUX 1024, N = {n}, K = {k}, float32; median of {args.rounds} interleaved rounds\n")
    print("| pass | MB moved | median ms | GB/s |")
    print("|---|---|---|---|")
    for name, (nbytes, _) in rows.items():
        ms = _median_ms(times[name][1:])
        print(f"| {name} | {nbytes / 1e6:.0f} | {ms:.1f} | {nbytes / ms / 1e6:.1f} |")


if __name__ == "__main__":
    main()
