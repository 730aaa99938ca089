// Fused ELBO surrogate of V-GRPO and group-shared noising: op schemas (namespace `vgrpo`) and the
// OpenMP CPU kernels. The math is vgrpo/ops/reference.py; the Triton (CUDA) kernels are
// kernels/elbo_surrogate.py and kernels/noising.py, registered for the CUDA key in vgrpo/ops/library.py
// together with the fake (meta) kernels and the autograd formula.
//
// Layout (latents flattened to D by the Python wrapper, all contiguous):
//   v_pred, v_old [N, K, D]; x0 [N, D]; noise [K, D] (shared) or [N, K, D]; t [K] or [N, K] in the
//   accumulation dtype (float32, float64 for float64 inputs).
// Per row r = (n, k):  u = v_pred - (noise - x0);  err = c(t) u;  c = t (adaptive, x), 1 (v), 1 - t (eps)
//   mse = mean err^2, mae = mean |err|, loss = mse / (mae + MAE_EPS) (adaptive) or mse,
//   kl = mean (t (v_pred - v_old))^2 (zeros without v_old).
// Backward (mae is stop-gradient), recomputing u instead of storing it:
//   grad_v = a u + b (v_pred - v_old),  a = 2 c^2 (g_mse + g_loss w) / D,  b = 2 t^2 g_kl / D,
//   w = 1 / (mae + MAE_EPS) for adaptive, else 1.
//
// Performance (bench/README.md has the measurements): both passes stream memory, so the work is
// split into tiles of one sample n and kTile latent elements; a thread walks the K rows (n, 0..K-1)
// of its tile while the tile of x0[n] stays in L2: x0 is read from memory once per sample instead
// of once per row. The inner loops are compiled three times (AVX-512, AVX2 + FMA, baseline x86-64)
// and the loader picks the clone the CPU supports (GCC target_clones), so the shipped build needs no
// -march flag. Outputs of several MiB are advised onto transparent huge pages before the kernel
// first touches them: a fresh 100 MB gradient otherwise costs 25k page faults, more than its write.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <omp.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "contract.h"

namespace vgrpo {
namespace {

constexpr int64_t kTile = 16384;  // latent elements of one sample per parallel work item
constexpr int64_t kBlock = 1024;  // elements per inner block; fp32 partial sums go to fp64 per block
constexpr int64_t kHugeOutputBytes = int64_t(8) << 20;  // outputs this large go on huge pages

// Inner loops: one clone per instruction set, chosen at load time (x86-64, GCC 12 or newer, which
// knows the x86-64-v3/v4 levels); elsewhere one baseline build.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define VGRPO_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VGRPO_CPU_CLONES
#endif
#define VGRPO_ALWAYS_INLINE inline __attribute__((always_inline))

// The weighting codes, schemas and kMaeEps come from the contract generated from Python.
using contract::kAdaptive;
using contract::kEps;
using contract::kMaeEps;
using contract::kV;

// Ask the kernel to back `t` with 2 MiB pages before anything touches it (Linux, THP in "madvise" or
// "always" mode; otherwise a no-op). Only the 2 MiB-aligned interior of the buffer is advised.
void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHuge = std::uintptr_t(2) << 20;
  const auto begin = reinterpret_cast<std::uintptr_t>(t.data_ptr());
  const std::uintptr_t lo = (begin + kHuge - 1) & ~(kHuge - 1);
  const std::uintptr_t hi = (begin + t.nbytes()) & ~(kHuge - 1);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);  // advice: errors ignored
#endif
}

// Debug aid for the tests: with VGRPO_DEBUG_POISON=1 outputs start as NaN instead of uninitialised,
// so an element the kernel forgets to write shows up.
at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  const char* poison = std::getenv("VGRPO_DEBUG_POISON");
  if (poison != nullptr && poison[0] == '1') {
    return at::full(sizes, std::numeric_limits<double>::quiet_NaN(), options);
  }
  at::Tensor out = at::empty(sizes, options);
  if (static_cast<int64_t>(out.nbytes()) >= kHugeOutputBytes) advise_huge_pages(out);
  return out;
}

std::string shape_str(const at::Tensor& t) { return c10::str(t.sizes()); }

struct Problem {
  int64_t n, k, d;
  bool shared_noise, per_sample_t, has_old;
};

// Strict checks on the flattened arguments; messages name the argument and the expected shape.
Problem check_inputs(const at::Tensor& v_pred, const at::Tensor& x0, const at::Tensor& noise,
                     const at::Tensor& t, const c10::optional<at::Tensor>& v_old, int64_t weighting) {
  TORCH_CHECK(v_pred.dim() == 3, "vgrpo::elbo: v_pred must be [N, K, D], got ", shape_str(v_pred));
  const int64_t n = v_pred.size(0), k = v_pred.size(1), d = v_pred.size(2);
  TORCH_CHECK(n > 0 && k > 0 && d > 0, "vgrpo::elbo: v_pred must be non-empty, got ", shape_str(v_pred));
  TORCH_CHECK(x0.dim() == 2 && x0.size(0) == n && x0.size(1) == d,
              "vgrpo::elbo: x0 must be [N, D] = [", n, ", ", d, "], got ", shape_str(x0));
  const bool shared = noise.dim() == 2;
  TORCH_CHECK((shared && noise.size(0) == k && noise.size(1) == d) ||
                  (noise.dim() == 3 && noise.size(0) == n && noise.size(1) == k && noise.size(2) == d),
              "vgrpo::elbo: noise must be [K, D] = [", k, ", ", d, "] or [N, K, D] = [", n, ", ", k, ", ",
              d, "], got ", shape_str(noise));
  const bool per_sample_t = t.dim() == 2;
  TORCH_CHECK((t.dim() == 1 && t.size(0) == k) || (per_sample_t && t.size(0) == n && t.size(1) == k),
              "vgrpo::elbo: t must be [K] = [", k, "] or [N, K] = [", n, ", ", k, "], got ", shape_str(t));
  TORCH_CHECK(weighting >= 0 && weighting < contract::kNumWeightings, "vgrpo::elbo: weighting must be ",
              contract::kWeightingChoices, ", got ", weighting);
  const auto dtype = v_pred.scalar_type();
  TORCH_CHECK(at::isFloatingType(dtype), "vgrpo::elbo: v_pred must be floating, got ", dtype);
  const auto acc = dtype == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(x0.scalar_type() == dtype, "vgrpo::elbo: x0 must have v_pred's dtype ", dtype, ", got ",
              x0.scalar_type());
  TORCH_CHECK(noise.scalar_type() == dtype, "vgrpo::elbo: noise must have v_pred's dtype ", dtype,
              ", got ", noise.scalar_type());
  TORCH_CHECK(t.scalar_type() == acc, "vgrpo::elbo: t must be ", acc, " (the accumulation dtype), got ",
              t.scalar_type());
  std::vector<std::pair<const char*, const at::Tensor*>> named = {
      {"v_pred", &v_pred}, {"x0", &x0}, {"noise", &noise}, {"t", &t}};
  if (v_old.has_value()) {
    TORCH_CHECK(v_old->sizes() == v_pred.sizes(), "vgrpo::elbo: v_old must have v_pred's shape ",
                shape_str(v_pred), ", got ", shape_str(*v_old));
    TORCH_CHECK(v_old->scalar_type() == dtype, "vgrpo::elbo: v_old must have v_pred's dtype ", dtype,
                ", got ", v_old->scalar_type());
    named.push_back({"v_old", &*v_old});
  }
  for (const auto& [name, tensor] : named) {
    TORCH_CHECK(tensor->device() == v_pred.device(), "vgrpo::elbo: ", name, " is on ", tensor->device(),
                " but v_pred is on ", v_pred.device());
    TORCH_CHECK(tensor->is_contiguous(), "vgrpo::elbo: ", name, " must be contiguous");
  }
  return {n, k, d, shared, per_sample_t, v_old.has_value()};
}

template <typename acc_t>
acc_t error_scale(acc_t t, int64_t weighting) {
  if (weighting == kV) return acc_t(1);
  if (weighting == kEps) return acc_t(1) - t;
  return t;
}

// Row r = n * K + k: offsets of its noise row and its timestep.
struct RowIndex {
  int64_t noise_off, t_off;
};

inline RowIndex row_index(const Problem& p, int64_t r) {
  return {(p.shared_noise ? r % p.k : r) * p.d, p.per_sample_t ? r : r % p.k};
}

inline int64_t tiles_per_sample(const Problem& p) { return (p.d + kTile - 1) / kTile; }

// body(item, n, begin, end) for every tile (sample n, latent elements [begin, end)), in parallel over
// OpenMP threads; static schedule, so each thread streams one contiguous range of memory (a
// dynamic schedule of single tiles interleaved the threads' ranges and measured slower).
template <typename Body>
void parallel_tiles(const Problem& p, const Body& body) {
  const int64_t per_sample = tiles_per_sample(p);
  const int64_t items = p.n * per_sample;
#pragma omp parallel for schedule(static) num_threads(at::get_num_threads())
  for (int64_t item = 0; item < items; ++item) {
    const int64_t begin = (item % per_sample) * kTile;
    body(item, item / per_sample, begin, std::min(p.d, begin + kTile));
  }
}

// Raw pointers of one call; v_old is null without it.
template <typename scalar_t>
struct Operands {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t *v, *x0, *noise, *v_old;
  const acc_t* t;
};

// Per-row constants of the backward: grad_v = a u + b (v_pred - v_old).
template <typename acc_t>
struct BwdCoef {
  acc_t a, b;
};

// visit(r, b, len) for every row r = (n, k) of tile (n, [begin, end)) and every block [b, b + len)
// of it: the tile of x0[n] (kTile elements, 64 KiB in float32) is read from memory for the first row
// and from L2 for the K - 1 others, and each row's stream runs kTile elements long, enough for the
// hardware prefetcher (K rows per kBlock block instead, 4 KiB per stream, measured no faster).
template <typename Visit>
VGRPO_ALWAYS_INLINE void for_each_row_block(const Problem& p, int64_t n, int64_t begin, int64_t end,
                                            const Visit& visit) {
  for (int64_t k = 0; k < p.k; ++k) {
    for (int64_t b = begin; b < end; b += kBlock) visit(n * p.k + k, b, std::min(end, b + kBlock) - b);
  }
}

// Forward of one tile: s[3 k + (0, 1, 2)] += sums of err^2, |err|, (t (v - v_old))^2 of row (n, k).
template <typename scalar_t>
VGRPO_ALWAYS_INLINE void fwd_tile_impl(const Problem& p, const Operands<scalar_t>& o, int64_t weighting,
                                       int64_t n, int64_t begin, int64_t end, double* s) {
  using acc_t = at::opmath_type<scalar_t>;
  for_each_row_block(p, n, begin, end, [&](int64_t r, int64_t b, int64_t len) __attribute__((always_inline)) {
    const RowIndex ix = row_index(p, r);
    const acc_t tr = o.t[ix.t_off];
    const acc_t c = error_scale(tr, weighting);
    const scalar_t* v = o.v + r * p.d + b;
    const scalar_t* x = o.x0 + n * p.d + b;
    const scalar_t* e = o.noise + ix.noise_off + b;
    double* sr = s + 3 * (r - n * p.k);
    acc_t a2 = 0, a1 = 0;
#pragma omp simd reduction(+ : a2, a1)
    for (int64_t i = 0; i < len; ++i) {
      const acc_t err = c * (acc_t(v[i]) - (acc_t(e[i]) - acc_t(x[i])));
      a2 += err * err;
      a1 += std::abs(err);
    }
    sr[0] += a2;
    sr[1] += a1;
    if (o.v_old != nullptr) {
      const scalar_t* vo = o.v_old + r * p.d + b;
      acc_t a3 = 0;
#pragma omp simd reduction(+ : a3)
      for (int64_t i = 0; i < len; ++i) {
        const acc_t dv = tr * (acc_t(v[i]) - acc_t(vo[i]));
        a3 += dv * dv;
      }
      sr[2] += a3;
    }
  });
}

// Backward of one tile: grad rows (n, 0..K-1), elements [begin, end).
template <typename scalar_t>
VGRPO_ALWAYS_INLINE void bwd_tile_impl(const Problem& p, const Operands<scalar_t>& o,
                                       const BwdCoef<at::opmath_type<scalar_t>>* coef, int64_t n,
                                       int64_t begin, int64_t end, scalar_t* grad) {
  using acc_t = at::opmath_type<scalar_t>;
  for_each_row_block(p, n, begin, end, [&](int64_t r, int64_t b, int64_t len) __attribute__((always_inline)) {
    const acc_t a = coef[r].a, bk = coef[r].b;
    const scalar_t* v = o.v + r * p.d + b;
    const scalar_t* x = o.x0 + n * p.d + b;
    const scalar_t* e = o.noise + row_index(p, r).noise_off + b;
    scalar_t* g = grad + r * p.d + b;
    if (o.v_old != nullptr) {
      const scalar_t* vo = o.v_old + r * p.d + b;
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) {
        const acc_t vi = acc_t(v[i]);
        g[i] = scalar_t(a * (vi - (acc_t(e[i]) - acc_t(x[i]))) + bk * (vi - acc_t(vo[i])));
      }
    } else {
#pragma omp simd
      for (int64_t i = 0; i < len; ++i) {
        g[i] = scalar_t(a * (acc_t(v[i]) - (acc_t(e[i]) - acc_t(x[i]))));
      }
    }
  });
}

// The per-dtype entry points of the inner loops, each compiled once per instruction set.
#define VGRPO_TILE_KERNELS(scalar_t)                                                                   \
  VGRPO_CPU_CLONES void fwd_tile(const Problem& p, const Operands<scalar_t>& o, int64_t weighting,    \
                                 int64_t n, int64_t begin, int64_t end, double* s) {                  \
    fwd_tile_impl<scalar_t>(p, o, weighting, n, begin, end, s);                                       \
  }                                                                                                   \
  VGRPO_CPU_CLONES void bwd_tile(const Problem& p, const Operands<scalar_t>& o,                       \
                                 const BwdCoef<at::opmath_type<scalar_t>>* coef, int64_t n,           \
                                 int64_t begin, int64_t end, scalar_t* grad) {                        \
    bwd_tile_impl<scalar_t>(p, o, coef, n, begin, end, grad);                                         \
  }
VGRPO_TILE_KERNELS(float)
VGRPO_TILE_KERNELS(double)
VGRPO_TILE_KERNELS(at::Half)
VGRPO_TILE_KERNELS(at::BFloat16)
#undef VGRPO_TILE_KERNELS

template <typename scalar_t>
void elbo_fwd_kernel(const Problem& p, const Operands<scalar_t>& o, int64_t weighting,
                     at::opmath_type<scalar_t>* loss, at::opmath_type<scalar_t>* mse,
                     at::opmath_type<scalar_t>* mae, at::opmath_type<scalar_t>* kl) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t per_sample = tiles_per_sample(p);
  // Partial sums (err^2, |err|, kl^2) per (tile, k), reduced per row afterwards. Each tile's slot is
  // padded to whole 64-byte lines, so threads on neighbouring tiles do not write to the same line.
  const int64_t stride = (p.k * 3 + 7) / 8 * 8;
  std::vector<double> partial(p.n * per_sample * stride, 0.0);
  parallel_tiles(p, [&](int64_t item, int64_t n, int64_t begin, int64_t end) {
    fwd_tile(p, o, weighting, n, begin, end, partial.data() + item * stride);
  });
  for (int64_t r = 0; r < p.n * p.k; ++r) {
    const int64_t n = r / p.k, k = r % p.k;
    double s2 = 0, s1 = 0, s3 = 0;
    for (int64_t tile = 0; tile < per_sample; ++tile) {
      const double* s = partial.data() + (n * per_sample + tile) * stride + k * 3;
      s2 += s[0];
      s1 += s[1];
      s3 += s[2];
    }
    const acc_t m2 = acc_t(s2 / p.d), m1 = acc_t(s1 / p.d);
    mse[r] = m2;
    mae[r] = m1;
    loss[r] = weighting == kAdaptive ? m2 / (m1 + acc_t(kMaeEps)) : m2;
    kl[r] = acc_t(s3 / p.d);
  }
}

template <typename scalar_t>
void elbo_bwd_kernel(const Problem& p, const Operands<scalar_t>& o, const at::opmath_type<scalar_t>* g_loss,
                     const at::opmath_type<scalar_t>* g_mse, const at::opmath_type<scalar_t>* g_kl,
                     const at::opmath_type<scalar_t>* mae, int64_t weighting, scalar_t* grad) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t two_over_d = acc_t(2.0 / double(p.d));
  std::vector<BwdCoef<acc_t>> coef(p.n * p.k);
  for (int64_t r = 0; r < p.n * p.k; ++r) {
    const acc_t tr = o.t[row_index(p, r).t_off];
    const acc_t c = error_scale(tr, weighting);
    const acc_t w = weighting == kAdaptive ? acc_t(1) / (mae[r] + acc_t(kMaeEps)) : acc_t(1);
    coef[r] = {two_over_d * c * c * (g_mse[r] + g_loss[r] * w),
               o.v_old != nullptr ? two_over_d * tr * tr * g_kl[r] : acc_t(0)};
  }
  parallel_tiles(p, [&](int64_t, int64_t n, int64_t begin, int64_t end) {
    bwd_tile(p, o, coef.data(), n, begin, end, grad);
  });
}

// z[r, :] = (1 - t) x0[n, :] + t noise[k or r, :] for every row r = (n, k), in out_t.
template <typename in_t, typename out_t>
void noise_latents_kernel(const Problem& p, const in_t* x0, const in_t* noise,
                          const at::opmath_type<in_t>* t, out_t* z) {
  using acc_t = at::opmath_type<in_t>;
  parallel_tiles(p, [&](int64_t, int64_t n, int64_t begin, int64_t end) {
    for (int64_t k = 0; k < p.k; ++k) {
      const int64_t r = n * p.k + k;
      const RowIndex ix = row_index(p, r);
      const acc_t tr = t[ix.t_off];
      const acc_t one_minus_t = acc_t(1) - tr;
      const in_t* xr = x0 + n * p.d;
      const in_t* er = noise + ix.noise_off;
      out_t* zr = z + r * p.d;
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) {
        zr[i] = out_t(one_minus_t * acc_t(xr[i]) + tr * acc_t(er[i]));
      }
    }
  });
}

template <typename scalar_t>
Operands<scalar_t> operands(const at::Tensor& v_pred, const at::Tensor& x0, const at::Tensor& noise,
                            const at::Tensor& t, const c10::optional<at::Tensor>& v_old) {
  return {v_pred.data_ptr<scalar_t>(), x0.data_ptr<scalar_t>(), noise.data_ptr<scalar_t>(),
          v_old.has_value() ? v_old->data_ptr<scalar_t>() : nullptr,
          t.data_ptr<at::opmath_type<scalar_t>>()};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> elbo_fwd_cpu(
    const at::Tensor& v_pred, const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t,
    const c10::optional<at::Tensor>& v_old, int64_t weighting) {
  const Problem p = check_inputs(v_pred, x0, noise, t, v_old, weighting);
  const auto opts = v_pred.options().dtype(t.scalar_type());
  at::Tensor loss = new_output({p.n, p.k}, opts), mse = new_output({p.n, p.k}, opts);
  at::Tensor mae = new_output({p.n, p.k}, opts), kl = new_output({p.n, p.k}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, v_pred.scalar_type(), "elbo_fwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    elbo_fwd_kernel<scalar_t>(p, operands<scalar_t>(v_pred, x0, noise, t, v_old), weighting,
                              loss.data_ptr<acc_t>(), mse.data_ptr<acc_t>(), mae.data_ptr<acc_t>(),
                              kl.data_ptr<acc_t>());
  });
  return {loss, mse, mae, kl};
}

at::Tensor elbo_bwd_cpu(const at::Tensor& grad_loss, const at::Tensor& grad_mse, const at::Tensor& grad_kl,
                        const at::Tensor& v_pred, const at::Tensor& x0, const at::Tensor& noise,
                        const at::Tensor& t, const c10::optional<at::Tensor>& v_old, const at::Tensor& mae,
                        int64_t weighting) {
  const Problem p = check_inputs(v_pred, x0, noise, t, v_old, weighting);
  for (const auto& [name, g] : {std::pair<const char*, const at::Tensor*>{"grad_loss", &grad_loss},
                                {"grad_mse", &grad_mse},
                                {"grad_kl", &grad_kl},
                                {"mae", &mae}}) {
    TORCH_CHECK(g->dim() == 2 && g->size(0) == p.n && g->size(1) == p.k, "vgrpo::elbo_bwd: ", name,
                " must be [N, K] = [", p.n, ", ", p.k, "], got ", shape_str(*g));
    TORCH_CHECK(g->scalar_type() == t.scalar_type(), "vgrpo::elbo_bwd: ", name, " must be ",
                t.scalar_type(), ", got ", g->scalar_type());
    TORCH_CHECK(g->is_contiguous() && g->device() == v_pred.device(), "vgrpo::elbo_bwd: ", name,
                " must be contiguous and on ", v_pred.device());
  }
  at::Tensor grad = new_output(v_pred.sizes(), v_pred.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, v_pred.scalar_type(), "elbo_bwd_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    elbo_bwd_kernel<scalar_t>(p, operands<scalar_t>(v_pred, x0, noise, t, v_old), grad_loss.data_ptr<acc_t>(),
                              grad_mse.data_ptr<acc_t>(), grad_kl.data_ptr<acc_t>(), mae.data_ptr<acc_t>(),
                              weighting, grad.data_ptr<scalar_t>());
  });
  return grad;
}

// z[n, k, :] = (1 - t) x0[n, :] + t noise[k or (n, k), :], written in out_dtype.
at::Tensor noise_latents_cpu(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& t,
                             at::ScalarType out_dtype) {
  TORCH_CHECK(x0.dim() == 2 && x0.numel() > 0, "vgrpo::noise_latents: x0 must be a non-empty [N, D], got ",
              shape_str(x0));
  const int64_t n = x0.size(0), d = x0.size(1);
  TORCH_CHECK(t.dim() == 1 || (t.dim() == 2 && t.size(0) == n),
              "vgrpo::noise_latents: t must be [K] or [N, K] = [", n, ", K], got ", shape_str(t));
  const int64_t k = t.size(-1);
  const bool shared = noise.dim() == 2;
  TORCH_CHECK((shared && noise.size(0) == k && noise.size(1) == d) ||
                  (noise.dim() == 3 && noise.size(0) == n && noise.size(1) == k && noise.size(2) == d),
              "vgrpo::noise_latents: noise must be [K, D] = [", k, ", ", d, "] or [N, K, D] = [", n, ", ",
              k, ", ", d, "], got ", shape_str(noise));
  const auto dtype = x0.scalar_type();
  TORCH_CHECK(noise.scalar_type() == dtype, "vgrpo::noise_latents: noise must have x0's dtype ", dtype,
              ", got ", noise.scalar_type());
  const auto acc = dtype == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(t.scalar_type() == acc, "vgrpo::noise_latents: t must be ", acc, ", got ", t.scalar_type());
  TORCH_CHECK(at::isFloatingType(out_dtype), "vgrpo::noise_latents: out_dtype must be floating, got ",
              out_dtype);
  for (const auto& [name, tensor] : {std::pair<const char*, const at::Tensor*>{"x0", &x0},
                                     {"noise", &noise},
                                     {"t", &t}}) {
    TORCH_CHECK(tensor->is_contiguous() && tensor->device() == x0.device(), "vgrpo::noise_latents: ", name,
                " must be contiguous and on ", x0.device());
  }
  const Problem p{n, k, d, shared, t.dim() == 2, false};
  at::Tensor z = new_output({n, k, d}, x0.options().dtype(out_dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "noise_latents_cpu", [&] {
    using in_t = scalar_t;
    using acc_t = at::opmath_type<in_t>;
    const in_t* xp = x0.data_ptr<in_t>();
    const in_t* ep = noise.data_ptr<in_t>();
    const acc_t* tp = t.data_ptr<acc_t>();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out_dtype, "noise_latents_cpu_out", [&] {
      noise_latents_kernel<in_t, scalar_t>(p, xp, ep, tp, z.data_ptr<scalar_t>());
    });
  });
  return z;
}

}  // namespace

// Schemas (csrc/contract.h, generated from vgrpo.ops.checks.SCHEMAS): the fake kernels and the autograd
// formula are registered from Python (vgrpo/ops/library.py), which also defines these schemas itself
// when this library is not built.
TORCH_LIBRARY(vgrpo, m) {
  m.def(contract::kElboFwdSchema);
  m.def(contract::kElboBwdSchema);
  m.def(contract::kNoiseLatentsSchema);
}

TORCH_LIBRARY_IMPL(vgrpo, CPU, m) {
  m.impl("elbo_fwd", &elbo_fwd_cpu);
  m.impl("elbo_bwd", &elbo_bwd_cpu);
  m.impl("noise_latents", &noise_latents_cpu);
}

}  // namespace vgrpo
