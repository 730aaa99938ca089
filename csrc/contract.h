// The op contract shared with Python. GENERATED from vgrpo/ops/checks.py and
// vgrpo/ops/reference.py by `python -m vgrpo.ops.contract_header > csrc/contract.h`; do not edit.
// tests/test_ops_contract.py fails when this file and the Python contract differ.
#pragma once

#include <cstdint>

namespace vgrpo::contract {

// Weighting codes (vgrpo.ops.checks.WEIGHTING_CODES): the `int weighting` argument of the ops.
enum Weighting : int64_t { kAdaptive = 0, kX = 1, kV = 2, kEps = 3 };
inline constexpr int64_t kNumWeightings = 4;
inline constexpr const char* kWeightingChoices = "0 (adaptive), 1 (x), 2 (v) or 3 (eps)";

// Added to the stop-gradient mae before dividing (vgrpo.ops.reference.MAE_EPS).
inline constexpr double kMaeEps = 1e-06;

// Op schemas, namespace vgrpo (vgrpo.ops.checks.SCHEMAS).
inline constexpr const char* kElboFwdSchema =
    "elbo_fwd(Tensor v_pred, Tensor x0, Tensor noise, Tensor t, Tensor? v_old, int weighting) -> (Tensor loss, Tensor mse, Tensor mae, Tensor kl)";
inline constexpr const char* kElboBwdSchema =
    "elbo_bwd(Tensor grad_loss, Tensor grad_mse, Tensor grad_kl, Tensor v_pred, Tensor x0, Tensor noise, Tensor t, Tensor? v_old, Tensor mae, int weighting) -> Tensor";
inline constexpr const char* kNoiseLatentsSchema =
    "noise_latents(Tensor x0, Tensor noise, Tensor t, ScalarType out_dtype) -> Tensor";

}  // namespace vgrpo::contract
