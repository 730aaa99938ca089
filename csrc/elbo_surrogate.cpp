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

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <omp.h>
#include <torch/library.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

namespace vgrpo {
namespace {

constexpr double kMaeEps = 1e-6;  // reference.MAE_EPS
constexpr int64_t kChunk = 16384;  // elements per parallel work item (rows are split into chunks)
constexpr int64_t kBlock = 1024;   // fp32 partial sums are flushed into fp64 every kBlock elements

enum Weighting : int64_t { kAdaptive = 0, kX = 1, kV = 2, kEps = 3 };

// Debug aid for the tests: with VGRPO_DEBUG_POISON=1 outputs start as NaN instead of uninitialised,
// so an element the kernel forgets to write shows up.
at::Tensor new_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  const char* poison = std::getenv("VGRPO_DEBUG_POISON");
  if (poison != nullptr && poison[0] == '1') {
    return at::full(sizes, std::numeric_limits<double>::quiet_NaN(), options);
  }
  return at::empty(sizes, options);
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
  TORCH_CHECK(weighting >= kAdaptive && weighting <= kEps,
              "vgrpo::elbo: weighting must be 0 (adaptive), 1 (x), 2 (v) or 3 (eps), got ", weighting);
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

// Row r = n * K + k: pointers to its x0 and noise rows and its timestep.
struct RowIndex {
  int64_t x0_off, noise_off, t_off;
};

inline RowIndex row_index(const Problem& p, int64_t r) {
  const int64_t n = r / p.k, k = r % p.k;
  return {n * p.d, (p.shared_noise ? k : r) * p.d, p.per_sample_t ? r : k};
}

// One parallel work item: elements [begin, end) of row r = (n, k).
struct Chunk {
  int64_t r, begin, end;
  RowIndex ix;
};

inline int64_t chunks_per_row(const Problem& p) { return (p.d + kChunk - 1) / kChunk; }

// body(item, chunk) for every (row, chunk) work item, in parallel over OpenMP threads. Rows are
// split into chunks so that a few long rows (small N * K) still occupy every thread.
template <typename Body>
void parallel_chunks(const Problem& p, const Body& body) {
  const int64_t per_row = chunks_per_row(p);
  const int64_t items = p.n * p.k * per_row;
#pragma omp parallel for schedule(static) num_threads(at::get_num_threads())
  for (int64_t item = 0; item < items; ++item) {
    const int64_t r = item / per_row;
    const int64_t begin = (item % per_row) * kChunk;
    body(item, Chunk{r, begin, std::min(p.d, begin + kChunk), row_index(p, r)});
  }
}

template <typename scalar_t>
void elbo_fwd_kernel(const Problem& p, const scalar_t* v, const scalar_t* x0, const scalar_t* noise,
                     const at::opmath_type<scalar_t>* t, const scalar_t* v_old, int64_t weighting,
                     at::opmath_type<scalar_t>* loss, at::opmath_type<scalar_t>* mse,
                     at::opmath_type<scalar_t>* mae, at::opmath_type<scalar_t>* kl) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t per_row = chunks_per_row(p);
  // Partial sums (sum err^2, sum |err|, sum kl^2) per (row, chunk), reduced per row afterwards.
  std::vector<double> partial(p.n * p.k * per_row * 3);

  parallel_chunks(p, [&](int64_t item, const Chunk& ch) {
    const acc_t tr = t[ch.ix.t_off];
    const acc_t c = error_scale(tr, weighting);
    const scalar_t* vr = v + ch.r * p.d;
    const scalar_t* xr = x0 + ch.ix.x0_off;
    const scalar_t* er = noise + ch.ix.noise_off;
    const scalar_t* vo = p.has_old ? v_old + ch.r * p.d : nullptr;
    double s2 = 0, s1 = 0, s3 = 0;
    for (int64_t b = ch.begin; b < ch.end; b += kBlock) {
      const int64_t e = std::min(ch.end, b + kBlock);
      acc_t a2 = 0, a1 = 0, a3 = 0;
#pragma omp simd reduction(+ : a2, a1)
      for (int64_t i = b; i < e; ++i) {
        const acc_t err = c * (acc_t(vr[i]) - (acc_t(er[i]) - acc_t(xr[i])));
        a2 += err * err;
        a1 += std::abs(err);
      }
      if (vo != nullptr) {
#pragma omp simd reduction(+ : a3)
        for (int64_t i = b; i < e; ++i) {
          const acc_t dv = tr * (acc_t(vr[i]) - acc_t(vo[i]));
          a3 += dv * dv;
        }
      }
      s2 += a2;
      s1 += a1;
      s3 += a3;
    }
    partial[item * 3 + 0] = s2;
    partial[item * 3 + 1] = s1;
    partial[item * 3 + 2] = s3;
  });

  for (int64_t r = 0; r < p.n * p.k; ++r) {
    double s2 = 0, s1 = 0, s3 = 0;
    for (int64_t c = 0; c < per_row; ++c) {
      s2 += partial[(r * per_row + c) * 3 + 0];
      s1 += partial[(r * per_row + c) * 3 + 1];
      s3 += partial[(r * per_row + c) * 3 + 2];
    }
    const acc_t m2 = acc_t(s2 / p.d), m1 = acc_t(s1 / p.d);
    mse[r] = m2;
    mae[r] = m1;
    loss[r] = weighting == kAdaptive ? m2 / (m1 + acc_t(kMaeEps)) : m2;
    kl[r] = acc_t(s3 / p.d);
  }
}

template <typename scalar_t>
void elbo_bwd_kernel(const Problem& p, const at::opmath_type<scalar_t>* g_loss,
                     const at::opmath_type<scalar_t>* g_mse, const at::opmath_type<scalar_t>* g_kl,
                     const scalar_t* v, const scalar_t* x0, const scalar_t* noise,
                     const at::opmath_type<scalar_t>* t, const scalar_t* v_old,
                     const at::opmath_type<scalar_t>* mae, int64_t weighting, scalar_t* grad) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t two_over_d = acc_t(2.0 / double(p.d));

  parallel_chunks(p, [&](int64_t, const Chunk& ch) {
    const int64_t r = ch.r;
    const acc_t tr = t[ch.ix.t_off];
    const acc_t c = error_scale(tr, weighting);
    const acc_t w = weighting == kAdaptive ? acc_t(1) / (mae[r] + acc_t(kMaeEps)) : acc_t(1);
    const acc_t a = two_over_d * c * c * (g_mse[r] + g_loss[r] * w);
    const scalar_t* vr = v + r * p.d;
    const scalar_t* xr = x0 + ch.ix.x0_off;
    const scalar_t* er = noise + ch.ix.noise_off;
    scalar_t* gr = grad + r * p.d;
    if (p.has_old) {
      const acc_t b = two_over_d * tr * tr * g_kl[r];
      const scalar_t* vo = v_old + r * p.d;
#pragma omp simd
      for (int64_t i = ch.begin; i < ch.end; ++i) {
        const acc_t vi = acc_t(vr[i]);
        gr[i] = scalar_t(a * (vi - (acc_t(er[i]) - acc_t(xr[i]))) + b * (vi - acc_t(vo[i])));
      }
    } else {
#pragma omp simd
      for (int64_t i = ch.begin; i < ch.end; ++i) {
        gr[i] = scalar_t(a * (acc_t(vr[i]) - (acc_t(er[i]) - acc_t(xr[i]))));
      }
    }
  });
}

// z[r, :] = (1 - t) x0[n, :] + t noise[k or r, :] for every row r = (n, k), in out_t.
template <typename in_t, typename out_t>
void noise_latents_kernel(const Problem& p, const in_t* x0, const in_t* noise,
                          const at::opmath_type<in_t>* t, out_t* z) {
  using acc_t = at::opmath_type<in_t>;
  parallel_chunks(p, [&](int64_t, const Chunk& ch) {
    const acc_t tr = t[ch.ix.t_off];
    const acc_t one_minus_t = acc_t(1) - tr;
    const in_t* xr = x0 + ch.ix.x0_off;
    const in_t* er = noise + ch.ix.noise_off;
    out_t* zr = z + ch.r * p.d;
#pragma omp simd
    for (int64_t i = ch.begin; i < ch.end; ++i) {
      zr[i] = out_t(one_minus_t * acc_t(xr[i]) + tr * acc_t(er[i]));
    }
  });
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
    elbo_fwd_kernel<scalar_t>(p, v_pred.data_ptr<scalar_t>(), x0.data_ptr<scalar_t>(),
                              noise.data_ptr<scalar_t>(), t.data_ptr<acc_t>(),
                              p.has_old ? v_old->data_ptr<scalar_t>() : nullptr, weighting,
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
    elbo_bwd_kernel<scalar_t>(p, grad_loss.data_ptr<acc_t>(), grad_mse.data_ptr<acc_t>(),
                              grad_kl.data_ptr<acc_t>(), v_pred.data_ptr<scalar_t>(),
                              x0.data_ptr<scalar_t>(), noise.data_ptr<scalar_t>(), t.data_ptr<acc_t>(),
                              p.has_old ? v_old->data_ptr<scalar_t>() : nullptr, mae.data_ptr<acc_t>(),
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

// Schemas: the fake kernels and the autograd formula are registered from Python
// (vgrpo/ops/library.py), which also defines these schemas itself when this library is not built.
TORCH_LIBRARY(vgrpo, m) {
  m.def("elbo_fwd(Tensor v_pred, Tensor x0, Tensor noise, Tensor t, Tensor? v_old, int weighting) "
        "-> (Tensor loss, Tensor mse, Tensor mae, Tensor kl)");
  m.def("elbo_bwd(Tensor grad_loss, Tensor grad_mse, Tensor grad_kl, Tensor v_pred, Tensor x0, "
        "Tensor noise, Tensor t, Tensor? v_old, Tensor mae, int weighting) -> Tensor");
  m.def("noise_latents(Tensor x0, Tensor noise, Tensor t, ScalarType out_dtype) -> Tensor");
}

TORCH_LIBRARY_IMPL(vgrpo, CPU, m) {
  m.impl("elbo_fwd", &elbo_fwd_cpu);
  m.impl("elbo_bwd", &elbo_bwd_cpu);
  m.impl("noise_latents", &noise_latents_cpu);
}

}  // namespace vgrpo
