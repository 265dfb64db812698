// vec-ops-x86.h — internal: the x86 VecOps kernels (ops/vec-ops.h), written once with 8-lane
// AVX2/FMA/F16C intrinsics and compiled by vec-ops-avx2.cpp and vec-ops-avx512.cpp with their
// own flags (internal linkage, like quant/dot-x86.h). Each kernel performs the IEEE operations
// of its scalar definition in the same order (mul, round-half-even, FMA, add, div, sqrt: one
// rounding each, so lane-wise execution gives the scalar bits); where a NaN could reach a
// conversion whose hardware form changes the payload, that group runs the scalar definition.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "ops/canon.h"
#include "ops/vec-ops.h"
#include "quant/dot-x86.h"

namespace qwen3moe {
namespace {

template <bool kSub>
inline void exp_rows_x8(const float* x, float m, float* y, int64_t n) {
    const __m256 mv = _mm256_set1_ps(m);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (kSub) v = _mm256_sub_ps(v, mv);
        _mm256_storeu_ps(y + i, exp_x8(v));
    }
    if (i < n) {
        alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t j = i; j < n; ++j) buf[j - i] = x[j];
        __m256 v = _mm256_load_ps(buf);
        if (kSub) v = _mm256_sub_ps(v, mv);
        _mm256_store_ps(buf, exp_x8(v));
        for (int64_t j = i; j < n; ++j) y[j] = buf[j - i];
    }
}

inline void exp_x8_rows(const float* x, float* y, int64_t n) { exp_rows_x8<false>(x, 0.0f, y, n); }
inline void exp_sub_x8_rows(const float* x, float m, float* y, int64_t n) { exp_rows_x8<true>(x, m, y, n); }

// rms_norm: ss by the canonical dot, y[i] = (x[i]*sc)*w[i] lane-wise.
inline void rms_norm_x8(const float* x, const float* w, float* y, int64_t n, float eps) {
    const float ss = canon_dot_x8(x, x, n);
    const float mean = canon_div(ss, (float)n);
    const float sc = canon_rsqrt(mean + eps);
    const __m256 sv = _mm256_set1_ps(sc);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv), _mm256_loadu_ps(w + i)));
    for (; i < n; ++i) y[i] = (x[i] * sc) * w[i];
}

// rope_neox: y[i] = fma(a, c, -(b*s)), y[i+h] = fma(a, s, b*c), 8 pairs at a time (each step
// reads its 2 x 8 inputs before writing them, so y may alias x).
inline void rope_neox_x8(const float* x, float* y, int head_dim, const float* cos_row, const float* sin_row) {
    const int h = head_dim / 2;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    int i = 0;
    for (; i + 8 <= h; i += 8) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + h);
        const __m256 c = _mm256_loadu_ps(cos_row + i), s = _mm256_loadu_ps(sin_row + i);
        const __m256 lo = _mm256_fmadd_ps(a, c, _mm256_xor_ps(_mm256_mul_ps(b, s), sign));
        const __m256 hi = _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c));
        _mm256_storeu_ps(y + i, lo);
        _mm256_storeu_ps(y + i + h, hi);
    }
    for (; i < h; ++i) {
        const float a = x[i], b = x[i + h], c = cos_row[i], s = sin_row[i];
        y[i] = canon_fma(a, c, -(b * s));
        y[i + h] = canon_fma(a, s, b * c);
    }
}

// f32 -> f16 by F16C (round to nearest even; overflow to inf, subnormal results exact: the
// canonical conversion for every non-NaN float); a group of 8 holding a NaN runs the scalar
// definition (its payload rule).
inline void f32_to_f16_x8(const float* x, uint16_t* h, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
            for (int k = 0; k < 8; ++k) h[i + k] = canon_f32_to_f16(x[i + k]);
        } else {
            _mm_storeu_si128((__m128i*)(h + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
    }
    for (; i < n; ++i) h[i] = canon_f32_to_f16(x[i]);
}

// 8 KV elements as floats: f32 loads, or f16 by F16C (exact for every non-NaN f16; `bad`
// collects NaN lanes, whose rows or tiles are then redone by the scalar-exact path).
template <bool kF16>
inline __m256 kv_load8(const void* base, int64_t off, __m256& bad) {
    if (kF16) {
        const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(static_cast<const uint16_t*>(base) + off)));
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        return v;
    }
    return _mm256_loadu_ps(static_cast<const float*>(base) + off);
}

// One tile's V accumulation for dims [d0, d0 + 8*NV): a[d] = fma(e_t, v_t[d], a[d]) for t in
// [t0, t1) ascending, from +0.0f, accumulators in registers.
template <bool kF16, int NV>
inline void attn_acc_tile(const float* e, const void* v, int64_t row_stride, int64_t off0, int t0, int t1,
                          int64_t d0, float* a, __m256& bad) {
    __m256 acc[NV];
    for (int j = 0; j < NV; ++j) acc[j] = _mm256_setzero_ps();
    for (int t = t0; t < t1; ++t) {
        const __m256 ev = _mm256_set1_ps(e[t]);
        const int64_t off = (int64_t)t * row_stride + off0 + d0;
        for (int j = 0; j < NV; ++j) acc[j] = _mm256_fmadd_ps(ev, kv_load8<kF16>(v, off + 8 * j, bad), acc[j]);
    }
    for (int j = 0; j < NV; ++j) _mm256_storeu_ps(a + d0 + 8 * j, acc[j]);
}

// attention_head (ops/attention.cpp's definition) for head_dim % 32 == 0: scores by the
// 32-lane dot with the K row converted in registers, a vector exp, V tiles accumulated in
// registers. Other head sizes run the definition as written.
template <bool kF16>
inline void attention_head_x8_impl(const float* q, const void* k, const void* v, int64_t row_stride, int64_t head_off,
                                   int n_kv, int hd, float kq_scale, float* out, const AttnScratch& sc) {
    float* scores = sc.scores;
    // Rule: s_t = canon_dot(q, k_t, hd) * kq_scale; m = max_t s_t
    float m = 0.0f;
    for (int t = 0; t < n_kv; ++t) {
        const int64_t off = (int64_t)t * row_stride + head_off;
        __m256 p0 = _mm256_setzero_ps(), p1 = _mm256_setzero_ps(), p2 = _mm256_setzero_ps(), p3 = _mm256_setzero_ps();
        __m256 bad = _mm256_setzero_ps();
        for (int i = 0; i < hd; i += 32) {
            p0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), kv_load8<kF16>(k, off + i, bad), p0);
            p1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), kv_load8<kF16>(k, off + i + 8, bad), p1);
            p2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 16), kv_load8<kF16>(k, off + i + 16, bad), p2);
            p3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 24), kv_load8<kF16>(k, off + i + 24, bad), p3);
        }
        float d = tree32_x8(p0, p1, p2, p3);
        if (kF16 && _mm256_movemask_ps(bad)) {  // a NaN in the row: the canonical conversion, then the dot
            f16_to_f32_x8(static_cast<const uint16_t*>(k) + off, sc.kv_row, hd);
            d = canon_dot_x8(q, sc.kv_row, hd);
        }
        const float s = d * kq_scale;
        scores[t] = s;
        if (t == 0 || s > m) m = s;
    }
    // Rule: e_t = canon_exp(s_t - m)
    exp_sub_x8_rows(scores, m, scores, n_kv);
    // Rule: tiles of kAttnTile positions; inside a tile, ascending t from +0.0f:
    //   z = z + e_t; a[d] = canon_fma(e_t, v_t[d], a[d]);
    // tiles combined in ascending tile order from +0.0f: Z = Z + z; A[d] = A[d] + a[d].
    float zsum = 0.0f;
    for (int d = 0; d < hd; ++d) out[d] = 0.0f;
    float* a = sc.a_tile;
    for (int t0 = 0; t0 < n_kv; t0 += kAttnTile) {
        const int t1 = t0 + kAttnTile < n_kv ? t0 + kAttnTile : n_kv;
        float z = 0.0f;
        for (int t = t0; t < t1; ++t) z = z + scores[t];
        __m256 bad = _mm256_setzero_ps();
        int64_t d0 = 0;
        for (; d0 + 64 <= hd; d0 += 64) attn_acc_tile<kF16, 8>(scores, v, row_stride, head_off, t0, t1, d0, a, bad);
        for (; d0 < hd; d0 += 32) attn_acc_tile<kF16, 4>(scores, v, row_stride, head_off, t0, t1, d0, a, bad);
        if (kF16 && _mm256_movemask_ps(bad)) {  // a NaN in the tile's V rows: the canonical path
            for (int d = 0; d < hd; ++d) a[d] = 0.0f;
            for (int t = t0; t < t1; ++t) {
                f16_to_f32_x8(static_cast<const uint16_t*>(v) + (int64_t)t * row_stride + head_off, sc.kv_row, hd);
                axpy_x8(scores[t], sc.kv_row, a, hd);
            }
        }
        zsum = zsum + z;
        for (int d = 0; d < hd; d += 8)
            _mm256_storeu_ps(out + d, _mm256_add_ps(_mm256_loadu_ps(out + d), _mm256_loadu_ps(a + d)));
    }
    // Rule: out[d] = canon_div(A[d], Z)
    const __m256 zv = _mm256_set1_ps(zsum);
    for (int d = 0; d < hd; d += 8) _mm256_storeu_ps(out + d, _mm256_div_ps(_mm256_loadu_ps(out + d), zv));
}

inline void attention_head_x8(const float* q, const void* k, const void* v, bool f16, int64_t row_stride,
                              int64_t head_off, int n_kv, int head_dim, float kq_scale, float* out,
                              const AttnScratch& sc) {
    if (head_dim <= 0 || head_dim % 32 != 0 || n_kv <= 0) {
        attention_head_ref(q, k, v, f16, row_stride, head_off, n_kv, head_dim, kq_scale, out, sc);
        return;
    }
    if (f16)
        attention_head_x8_impl<true>(q, k, v, row_stride, head_off, n_kv, head_dim, kq_scale, out, sc);
    else
        attention_head_x8_impl<false>(q, k, v, row_stride, head_off, n_kv, head_dim, kq_scale, out, sc);
}

}  // namespace
}  // namespace qwen3moe
