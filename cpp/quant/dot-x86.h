// dot-x86.h — internal AVX2-level helpers shared by dot-avx2.cpp and dot-avx512.cpp.
//
// Everything here has internal linkage (anonymous namespace): each ISA translation unit gets
// its own copy compiled with its own flags, so no out-of-line copy built with AVX-512 flags
// can be picked by the linker for the AVX2 or baseline code. Include only from files built
// with at least -mavx2 -mfma -mf16c.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "quant/blocks.h"
#include "quant/dot-canon.h"

namespace qwen3moe {
namespace {

// f16 -> f32 with F16C: the same value as canon_f16_to_f32 for every non-NaN input (the
// conversion is exact); a signalling NaN comes out quieted, which is allowed (NaN payloads are
// unspecified by the numerics contract).
inline float f16_to_f32_hw(uint16_t h) { return _cvtsh_ss(h); }

inline int32_t hsum_i32x8(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

// Both horizontal sums at once: *ra = sum of a's lanes, *rb = sum of b's lanes.
inline void hsum2_i32x8(__m256i a, __m256i b, int32_t* ra, int32_t* rb) {
    const __m256i h = _mm256_hadd_epi32(a, b);  // [a01 a23 b01 b23 | a45 a67 b45 b67]
    __m128i x = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    x = _mm_hadd_epi32(x, x);  // [A B A B]
    *ra = _mm_cvtsi128_si32(x);
    *rb = _mm_extract_epi32(x, 1);
}

// The 8 six-bit scales and 8 mins of a Q4_K/Q5_K block as bytes [sc0..sc7, m0..m7] (the same
// values as k4_unpack_scales in blocks.h). Reads 16 bytes at `packed` (the 12 scale bytes and
// 4 bytes of the same block that follow them).
inline __m128i k4_scales_sse(const uint8_t* packed) {
    const __m128i v = _mm_loadu_si128((const __m128i*)packed);  // words w0 w1 w2 (w3 unused)
    const __m128i k1 = _mm_set1_epi32(0x3f3f3f3f), k2 = _mm_set1_epi32(0x0f0f0f0f), k3 = _mm_set1_epi32(0x03030303);
    const __m128i lo = _mm_and_si128(v, k1);                                       // [sc0-3, m0-3, ...]
    const __m128i w2 = _mm_shuffle_epi32(v, 0xaa);                                 // w2 everywhere
    const __m128i hi = _mm_or_si128(_mm_and_si128(_mm_srlv_epi32(w2, _mm_setr_epi32(0, 4, 0, 0)), k2),
                                    _mm_slli_epi32(_mm_and_si128(_mm_srli_epi32(v, 6), k3), 4));  // [sc4-7, m4-7]
    return _mm_unpacklo_epi32(lo, hi);  // [sc0-3, sc4-7, m0-3, m4-7]
}

// r[k] = sum of the 8 int32 lanes of v[k], k = 0..7.
inline __m256i reduce_i32x8x8(const __m256i* v) {
    const __m256i h01 = _mm256_hadd_epi32(v[0], v[1]);
    const __m256i h23 = _mm256_hadd_epi32(v[2], v[3]);
    const __m256i h45 = _mm256_hadd_epi32(v[4], v[5]);
    const __m256i h67 = _mm256_hadd_epi32(v[6], v[7]);
    const __m256i h0123 = _mm256_hadd_epi32(h01, h23);
    const __m256i h4567 = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                            _mm256_permute2x128_si256(h0123, h4567, 0x31));
}

// The canonical tree (ops/canon.h) over lanes 0-7 | 8-15 | 16-23 | 24-31 held in p0..p3:
// s = 16: p[l] += p[l+16]; s = 8; s = 4; s = 2; s = 1 — the same additions, same operand order.
inline float tree32_x8(__m256 p0, __m256 p1, __m256 p2, __m256 p3) {
    const __m256 q0 = _mm256_add_ps(p0, p2);
    const __m256 q1 = _mm256_add_ps(p1, p3);
    const __m256 r = _mm256_add_ps(q0, q1);
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}

inline float tree32_mem(const float* p) {
    return tree32_x8(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8), _mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 24));
}

// y[i] = canon_fma(a, x[i], y[i]): hardware FMA rounds once, exactly like fmaf.
inline void axpy_x8(float a, const float* x, float* y, int64_t n) {
    const __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] = canon_fma(a, x[i], y[i]);
}

// y[i] = canon_f16_to_f32(h[i]), 8 at a time by the F16C conversion (exact for every non-NaN
// f16, subnormals included); a group of 8 holding a NaN runs the scalar definition (the
// hardware would set the quiet bit of a signalling NaN, the definition keeps the payload).
inline void f16_to_f32_x8(const uint16_t* h, float* y, int64_t n) {
    const __m128i abs_mask = _mm_set1_epi16(0x7fff), inf = _mm_set1_epi16(0x7c00);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i v = _mm_loadu_si128((const __m128i*)(h + i));
        const __m128i nan = _mm_cmpgt_epi16(_mm_and_si128(v, abs_mask), inf);  // |h| > inf bits
        if (_mm_movemask_epi8(nan)) {
            for (int k = 0; k < 8; ++k) y[i + k] = canon_f16_to_f32(h[i + k]);
        } else {
            _mm256_storeu_ps(y + i, _mm256_cvtph_ps(v));
        }
    }
    for (; i < n; ++i) y[i] = canon_f16_to_f32(h[i]);
}

// canon_exp on 8 lanes, every input (NaN, +-inf, +-0, the cut-offs, the rescaled powers of two):
// the same operations as canon_exp, the branches taken lane by lane with blends.
inline __m256 exp_x8(__m256 x) {
    const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    const __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(88.72283935546875f), _CMP_GT_OQ);
    const __m256 small = _mm256_cmp_ps(x, _mm256_set1_ps(-103.972076416015625f), _CMP_LT_OQ);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269502162933349609375f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693145751953125f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-1.428606765330187045e-06f), r);
    __m256 p = _mm256_set1_ps(1.98412698e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.38888889e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.33333333e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.16666667e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.66666667e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_cvttps_epi32(n);  // exact for the lanes kept (|n| <= 150)
    // ni > 127: p = p * 2, ni -= 1
    const __m256i hi = _mm256_cmpgt_epi32(ni, _mm256_set1_epi32(127));
    p = _mm256_blendv_ps(p, _mm256_mul_ps(p, _mm256_set1_ps(2.0f)), _mm256_castsi256_ps(hi));
    ni = _mm256_add_epi32(ni, hi);  // mask lanes are -1
    // ni < -126: p = p * 2^-64, ni += 64
    const __m256i lo = _mm256_cmpgt_epi32(_mm256_set1_epi32(-126), ni);
    p = _mm256_blendv_ps(p, _mm256_mul_ps(p, _mm256_set1_ps(5.42101086242752217e-20f)), _mm256_castsi256_ps(lo));
    ni = _mm256_add_epi32(ni, _mm256_and_si256(lo, _mm256_set1_epi32(64)));
    const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
    __m256 e = _mm256_mul_ps(p, scale);
    e = _mm256_blendv_ps(e, _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000)), big);
    e = _mm256_andnot_ps(small, e);  // +0.0f
    return _mm256_blendv_ps(e, x, nan);  // NaN: x itself
}

// s[i] = canon_silu(g[i]) * u[i], 8 lanes at a time: canon_exp(-g) by exp_x8, then the same
// add, division and product as the scalar definition.
inline void swiglu_x8(const float* g, const float* u, float* s, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gv = _mm256_loadu_ps(g + i);
        const __m256 den = _mm256_add_ps(one, exp_x8(_mm256_xor_ps(gv, sign)));  // 1 + canon_exp(-g)
        _mm256_storeu_ps(s + i, _mm256_mul_ps(_mm256_div_ps(gv, den), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; ++i) s[i] = canon_silu(g[i]) * u[i];
}

// canon_dot_ref with four 8-lane FMA accumulators = the 32 canonical lanes.
inline float canon_dot_x8(const float* a, const float* b, int64_t n) {
    __m256 p0 = _mm256_setzero_ps(), p1 = _mm256_setzero_ps(), p2 = _mm256_setzero_ps(),
           p3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        p0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), p0);
        p1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), p1);
        p2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), p2);
        p3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), p3);
    }
    if (i < n) {  // tail: only the lanes that own an element are touched
        alignas(32) float p[kCanonLanes];
        _mm256_store_ps(p, p0);
        _mm256_store_ps(p + 8, p1);
        _mm256_store_ps(p + 16, p2);
        _mm256_store_ps(p + 24, p3);
        for (int64_t j = i; j < n; ++j) p[j - i] = canon_fma(a[j], b[j], p[j - i]);
        return tree32_mem(p);
    }
    return tree32_x8(p0, p1, p2, p3);
}

// Q8K quantiser (dot-ref.cpp quantize_block_q8k_ref), 8 floats at a time.
inline void quantize_q8k_x8(const float* x, block_q8k* y, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < n / QK_K; ++b) {
        const float* xb = x + b * QK_K;
        block_q8k* yb = y + b;
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < QK_K; i += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xb + i)), m);
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        const float amax = _mm_cvtss_f32(m4);  // NaN inputs never win a max_ps (second operand kept)
        if (amax == 0.0f) {
            yb->d = 0.0f;
            for (int i = 0; i < QK_K; ++i) yb->qs[i] = 0;
            for (int k = 0; k < QK_K / 16; ++k) yb->bsums[k] = 0;
            continue;
        }
        const __m256 is = _mm256_set1_ps(canon_div(127.0f, amax));
        for (int g = 0; g < QK_K; g += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; ++k) {
                __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + g + 8 * k), is),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q));  // NaN -> 0
                r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
                q[k] = _mm256_cvtps_epi32(r);
            }
            const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
            const __m256i qs = _mm256_permutevar8x32_epi32(p, perm);
            _mm256_storeu_si256((__m256i*)(yb->qs + g), qs);
            // bsums: sum(q) = sum(q ^ 0x80 as unsigned) - 16 * 128 per 16 values
            const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(qs, flip), _mm256_setzero_si256());
            alignas(32) int64_t s[4];
            _mm256_store_si256((__m256i*)s, sad);
            yb->bsums[g / 16] = (int16_t)(s[0] + s[1] - 2048);
            yb->bsums[g / 16 + 1] = (int16_t)(s[2] + s[3] - 2048);
        }
        yb->d = canon_div(amax, 127.0f);
    }
}

// The row loop shared by every weight type: K::decode(row, b) unpacks weight block b (or the 8
// blocks of 32 covering activation block b) once, K::block(w, a) gives the canonical c_b for one
// token. Tokens are taken kTok at a time so each weight block is decoded once per group.
template <class K>
void dot_rows(const void* w_row, const block_q8k* a, int64_t a_stride, int n_tok, int64_t nb, float* out,
              int64_t out_stride) {
    constexpr int kTok = 8;
    if (n_tok == 1) {
        alignas(32) float p[kCanonLanes];
        canon_row_init(p);
        for (int64_t b = 0; b < nb; ++b) {
            const typename K::W w = K::decode(w_row, b);
            canon_row_add(p, b, K::block(w, a[b]));
        }
        out[0] = tree32_mem(p);
        return;
    }
    for (int t0 = 0; t0 < n_tok; t0 += kTok) {
        const int nt = n_tok - t0 < kTok ? n_tok - t0 : kTok;
        alignas(32) float p[kTok][kCanonLanes];
        for (int t = 0; t < nt; ++t) canon_row_init(p[t]);
        for (int64_t b = 0; b < nb; ++b) {
            const typename K::W w = K::decode(w_row, b);
            for (int t = 0; t < nt; ++t) canon_row_add(p[t], b, K::block(w, a[(t0 + t) * a_stride + b]));
        }
        for (int t = 0; t < nt; ++t) out[(t0 + t) * out_stride] = tree32_mem(p[t]);
    }
}

}  // namespace
}  // namespace qwen3moe
