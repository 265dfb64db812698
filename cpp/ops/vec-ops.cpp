// vec-ops.cpp — the scalar VecOps table (the canonical definitions, executed as written) and
// the selector that follows the quant area's SIMD level.
#include "ops/vec-ops.h"

#include <cstring>

#include "ops/canon.h"
#include "quant/dot-kernels.h"
#include "quant/quant.h"

namespace qwen3moe {

namespace {

void exp_ref(const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = canon_exp(x[i]);
}

void exp_sub_ref(const float* x, float m, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = canon_exp(x[i] - m);
}

void rms_norm_ref(const float* x, const float* w, float* y, int64_t n, float eps) {
    // Rule: ss = canon_dot(x,x,n); mean = canon_div(ss,(float)n); sc = canon_rsqrt(mean + eps);
    //       y[i] = (x[i]*sc)*w[i]
    const float ss = canon_dot(x, x, n);
    const float mean = canon_div(ss, (float)n);
    const float sc = canon_rsqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * sc) * w[i];
}

void rope_neox_ref(const float* x, float* y, int head_dim, const float* cos_row, const float* sin_row) {
    // Rule: y[i] = canon_fma(x[i], c, -(x[i+h]*s)); y[i+h] = canon_fma(x[i], s, x[i+h]*c)
    const int h = head_dim / 2;
    for (int i = 0; i < h; ++i) {
        const float a = x[i], b = x[i + h], c = cos_row[i], s = sin_row[i];
        y[i] = canon_fma(a, c, -(b * s));
        y[i + h] = canon_fma(a, s, b * c);
    }
}

void f32_to_f16_ref(const float* x, uint16_t* h, int64_t n) {
    for (int64_t i = 0; i < n; ++i) h[i] = canon_f32_to_f16(x[i]);
}

const VecOps* pick(const char* level) {
    // simd_level() returns the name pointer of the quant kernel table in use
    if (level == kDotKernelsRef.name || std::strcmp(level, "scalar") == 0) return &kVecOpsRef;
    if (level == kDotKernelsAvx2.name || std::strcmp(level, "avx2") == 0) return &kVecOpsAvx2;
    if (level == kDotKernelsAvx512.name || std::strcmp(level, "avx512vnni") == 0) return &kVecOpsAvx512;
    // a level this file does not know: the best table the CPU runs (all give the same bits)
    if (simd_level_available("avx512vnni")) return &kVecOpsAvx512;
    if (simd_level_available("avx2")) return &kVecOpsAvx2;
    return &kVecOpsRef;
}

}  // namespace

const VecOps kVecOpsRef = {"scalar", exp_ref, exp_sub_ref, attention_head_ref, rms_norm_ref, rope_neox_ref,
                           f32_to_f16_ref};

const VecOps& vec_ops() {
    return *pick(simd_level());  // an atomic load and a pointer compare on the fast path
}

}  // namespace qwen3moe
