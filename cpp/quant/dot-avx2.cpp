// dot-avx2.cpp — AVX2/FMA kernels for the Q8K dots, canon_dot and the Q8K quantiser.
//
// Same bits as dot-ref.cpp: the integer block sums are exact (any order), the float part is the
// shared expression from dot-canon.h. Integer work: _mm256_maddubs_epi16 multiplies unsigned
// weight codes (nibbles 0..15, Q5_K 0..31, Q6_K 0..63) by signed int8 activations into int16
// pair sums (never saturating: |2 * 63 * 128| < 32768), _mm256_madd_epi16 applies the sub-block
// scale. Signed offsets use the Q8K bsums: Q6_K's -32 and Q4_0's -8 become -32*sum(sc_j*bsum_j)
// and -8*(pair of bsums), the K-quant mins m_j*sum(a) are madd(bsums, mins).
// Precondition (met by quantize_row_q8k): activation qs in -127..127, bsums = sums of 16 qs.
#include "quant/dot-x86.h"
#include "quant/dot-kernels.h"
#include "quant/ggml-types.h"

namespace qwen3moe {
namespace {

// int16 broadcast of word j of each 128-bit lane of v (shuffle control for pshufb).
inline __m256i bcast_word(__m256i v, int j_lo, int j_hi) {
    const __m256i ctrl = _mm256_setr_epi16(
        (short)((2 * j_lo + 1) << 8 | 2 * j_lo), (short)((2 * j_lo + 1) << 8 | 2 * j_lo),
        (short)((2 * j_lo + 1) << 8 | 2 * j_lo), (short)((2 * j_lo + 1) << 8 | 2 * j_lo),
        (short)((2 * j_lo + 1) << 8 | 2 * j_lo), (short)((2 * j_lo + 1) << 8 | 2 * j_lo),
        (short)((2 * j_lo + 1) << 8 | 2 * j_lo), (short)((2 * j_lo + 1) << 8 | 2 * j_lo),
        (short)((2 * j_hi + 1) << 8 | 2 * j_hi), (short)((2 * j_hi + 1) << 8 | 2 * j_hi),
        (short)((2 * j_hi + 1) << 8 | 2 * j_hi), (short)((2 * j_hi + 1) << 8 | 2 * j_hi),
        (short)((2 * j_hi + 1) << 8 | 2 * j_hi), (short)((2 * j_hi + 1) << 8 | 2 * j_hi),
        (short)((2 * j_hi + 1) << 8 | 2 * j_hi), (short)((2 * j_hi + 1) << 8 | 2 * j_hi));
    return _mm256_shuffle_epi8(v, ctrl);
}

// 8 scales (both lanes, int16) and the mins as int16 pairs [m0 m0 m1 m1 ... m7 m7].
inline void k4_scales_x8(const uint8_t* packed, __m256i* sc16, __m256i* m16) {
    const __m128i sm = k4_scales_sse(packed);
    *sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
    const __m256i m32 = _mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8));
    *m16 = _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16));
}

// Q4_K and Q5_K share the block computation; only the decode differs.
struct WK4 {
    __m256i q[8];   // [8 sub-blocks][32] unsigned codes
    __m256i sc16;   // [8] sub-block scales as int16, in both 128-bit lanes
    __m256i m16;    // [16] mins as int16 pairs (one per Q8K bsum)
    float d, dmin;  // super-block scales
};

inline float block_k4(const WK4& w, const block_q8k& a) {
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
        const __m256i p = _mm256_maddubs_epi16(w.q[j], _mm256_loadu_si256((const __m256i*)(a.qs + 32 * j)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, bcast_word(w.sc16, j, j)));
    }
    const __m256i mins = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a.bsums), w.m16);
    int32_t isum, msum;
    hsum2_i32x8(acc, mins, &isum, &msum);
    return canon_block_q4k(a.d, w.d, w.dmin, isum, msum);
}

struct KQ4K {
    using W = WK4;
    static W decode(const void* row, int64_t b) {
        const block_q4_K& x = static_cast<const block_q4_K*>(row)[b];
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        W w;
        for (int c = 0; c < 4; ++c) {
            const __m256i raw = _mm256_loadu_si256((const __m256i*)(x.qs + 32 * c));
            w.q[2 * c] = _mm256_and_si256(raw, m4);
            w.q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        }
        k4_scales_x8(x.scales, &w.sc16, &w.m16);
        w.d = f16_to_f32_hw(x.d);
        w.dmin = f16_to_f32_hw(x.dmin);
        return w;
    }
    static float block(const W& w, const block_q8k& a) { return block_k4(w, a); }
};

struct KQ5K {
    using W = WK4;
    static W decode(const void* row, int64_t b) {
        const block_q5_K& x = static_cast<const block_q5_K*>(row)[b];
        const __m256i m4 = _mm256_set1_epi8(0x0f), b4 = _mm256_set1_epi8(0x10);
        const __m256i qh = _mm256_loadu_si256((const __m256i*)x.qh);
        W w;
        for (int c = 0; c < 4; ++c) {
            const __m256i raw = _mm256_loadu_si256((const __m256i*)(x.qs + 32 * c));
            w.q[2 * c] = _mm256_and_si256(raw, m4);
            w.q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        }
        // bit j of qh -> bit 4 of sub-block j's codes (16-bit shifts never carry a foreign bit
        // into bit 4 of a byte for these shift counts)
        w.q[0] = _mm256_or_si256(w.q[0], _mm256_and_si256(_mm256_slli_epi16(qh, 4), b4));
        w.q[1] = _mm256_or_si256(w.q[1], _mm256_and_si256(_mm256_slli_epi16(qh, 3), b4));
        w.q[2] = _mm256_or_si256(w.q[2], _mm256_and_si256(_mm256_slli_epi16(qh, 2), b4));
        w.q[3] = _mm256_or_si256(w.q[3], _mm256_and_si256(_mm256_slli_epi16(qh, 1), b4));
        w.q[4] = _mm256_or_si256(w.q[4], _mm256_and_si256(qh, b4));
        w.q[5] = _mm256_or_si256(w.q[5], _mm256_and_si256(_mm256_srli_epi16(qh, 1), b4));
        w.q[6] = _mm256_or_si256(w.q[6], _mm256_and_si256(_mm256_srli_epi16(qh, 2), b4));
        w.q[7] = _mm256_or_si256(w.q[7], _mm256_and_si256(_mm256_srli_epi16(qh, 3), b4));
        k4_scales_x8(x.scales, &w.sc16, &w.m16);
        w.d = f16_to_f32_hw(x.d);
        w.dmin = f16_to_f32_hw(x.dmin);
        return w;
    }
    static float block(const W& w, const block_q8k& a) { return block_k4(w, a); }
};

struct KQ6K {
    struct W {
        __m256i q[8];   // [8][32] unsigned codes 0..63 (value + 32), natural order
        __m256i scA;    // scales 0..7 as int16, both lanes
        __m256i scB;    // scales 8..15 as int16, both lanes
        __m256i sc16;   // scales 0..15 as int16, in order
        float d;        // super-block scale
    };
    static W decode(const void* row, int64_t b) {
        const block_q6_K& x = static_cast<const block_q6_K*>(row)[b];
        const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
        W w;
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = _mm256_loadu_si256((const __m256i*)(x.ql + 64 * h));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i*)(x.ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i*)(x.qh + 32 * h));
            w.q[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
            w.q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
            w.q[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
            w.q[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                             _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
        }
        const __m128i sc8 = _mm_loadu_si128((const __m128i*)x.scales);
        w.sc16 = _mm256_cvtepi8_epi16(sc8);
        w.scA = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(w.sc16));
        w.scB = _mm256_broadcastsi128_si256(_mm256_extracti128_si256(w.sc16, 1));
        w.d = f16_to_f32_hw(x.d);
        return w;
    }
    static float block(const W& w, const block_q8k& a) {
        __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {  // 32 values = sub-blocks 2k (low lane), 2k+1 (high lane)
            const __m256i p = _mm256_maddubs_epi16(w.q[k], _mm256_loadu_si256((const __m256i*)(a.qs + 32 * k)));
            const __m256i sc = k < 4 ? bcast_word(w.scA, 2 * k, 2 * k + 1) : bcast_word(w.scB, 2 * k - 8, 2 * k - 7);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc));
        }
        const __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a.bsums), w.sc16);
        acc = _mm256_sub_epi32(acc, _mm256_slli_epi32(off, 5));
        return canon_block_q6k(a.d, w.d, hsum_i32x8(acc));
    }
};

struct KQ8_0 {
    struct W {
        __m256i q[8];   // [8 blocks][32] int8 codes
        float dk[8];    // block scales
    };
    static W decode(const void* row, int64_t b) {
        const block_q8_0* x = static_cast<const block_q8_0*>(row) + 8 * b;
        W w;
        for (int k = 0; k < 8; ++k) {
            w.q[k] = _mm256_loadu_si256((const __m256i*)x[k].qs);
            w.dk[k] = f16_to_f32_hw(x[k].d);
        }
        return w;
    }
    static float block(const W& w, const block_q8k& a) {
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i v[8];
        for (int k = 0; k < 8; ++k) {
            const __m256i av = _mm256_loadu_si256((const __m256i*)(a.qs + 32 * k));
            const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(w.q[k]), _mm256_sign_epi8(av, w.q[k]));
            v[k] = _mm256_madd_epi16(p, ones);
        }
        alignas(32) int32_t isum[8];
        _mm256_store_si256((__m256i*)isum, reduce_i32x8x8(v));
        return canon_block_q8_0(a.d, w.dk, isum);
    }
};

struct KQ4_0 {
    struct W {
        __m256i q[8];   // [8 blocks][32] unsigned nibbles (value + 8)
        float dk[8];    // block scales
    };
    static W decode(const void* row, int64_t b) {
        const block_q4_0* x = static_cast<const block_q4_0*>(row) + 8 * b;
        const __m128i m4 = _mm_set1_epi8(0x0f);
        W w;
        for (int k = 0; k < 8; ++k) {
            const __m128i raw = _mm_loadu_si128((const __m128i*)x[k].qs);
            w.q[k] = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4));
            w.dk[k] = f16_to_f32_hw(x[k].d);
        }
        return w;
    }
    static float block(const W& w, const block_q8k& a) {
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i v[8];
        for (int k = 0; k < 8; ++k) {
            const __m256i av = _mm256_loadu_si256((const __m256i*)(a.qs + 32 * k));
            v[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(w.q[k], av), ones);
        }
        const __m256i pair = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a.bsums), ones);
        alignas(32) int32_t isum[8];
        _mm256_store_si256((__m256i*)isum, _mm256_sub_epi32(reduce_i32x8x8(v), _mm256_slli_epi32(pair, 3)));
        return canon_block_q8_0(a.d, w.dk, isum);
    }
};

void dot_q8k_avx2(uint32_t type, const void* w_row, const block_q8k* a, int64_t a_stride, int n_tok, int64_t n,
                  float* out, int64_t out_stride) {
    const int64_t nb = n / QK_K;
    switch (type) {
        case GGML_TYPE_Q4_K: dot_rows<KQ4K>(w_row, a, a_stride, n_tok, nb, out, out_stride); break;
        case GGML_TYPE_Q5_K: dot_rows<KQ5K>(w_row, a, a_stride, n_tok, nb, out, out_stride); break;
        case GGML_TYPE_Q6_K: dot_rows<KQ6K>(w_row, a, a_stride, n_tok, nb, out, out_stride); break;
        case GGML_TYPE_Q8_0: dot_rows<KQ8_0>(w_row, a, a_stride, n_tok, nb, out, out_stride); break;
        case GGML_TYPE_Q4_0: dot_rows<KQ4_0>(w_row, a, a_stride, n_tok, nb, out, out_stride); break;
        default: break;  // validated by the dispatcher
    }
}

float canon_dot_avx2(const float* a, const float* b, int64_t n) { return canon_dot_x8(a, b, n); }

void quantize_q8k_avx2(const float* x, block_q8k* y, int64_t n) { quantize_q8k_x8(x, y, n); }

void dot_q8k_rows1_avx2(uint32_t type, const uint8_t* w, size_t row_bytes, int64_t n_rows, const block_q8k* a,
                        int64_t n, float* out, int64_t prefetch) {
    rows1_loop(w, row_bytes, n_rows, prefetch,
               [&](int64_t r) { dot_q8k_avx2(type, w + (size_t)r * row_bytes, a, 0, 1, n, out + r, 0); });
}

}  // namespace

const DotKernels kDotKernelsAvx2 = {"avx2", dot_q8k_avx2, dot_q8k_rows1_avx2, canon_dot_avx2, quantize_q8k_avx2, axpy_x8, swiglu_x8,
                                    f16_to_f32_x8};

}  // namespace qwen3moe
