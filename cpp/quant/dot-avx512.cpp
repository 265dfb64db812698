// dot-avx512.cpp — AVX-512 (F/BW/VL/DQ) + VNNI kernels for the Q8K dots and canon_dot.
//
// Same bits as dot-ref.cpp (integer sums exact, float part from dot-canon.h). The K-quants
// work on 64 codes per register: _mm512_maddubs_epi16 (unsigned codes x signed int8
// activations -> int16 pair sums, never saturating) then _mm512_dpwssd_epi32 applies the
// per-sub-block int16 scales and accumulates in int32 in one instruction. Q8_0/Q4_0 use
// _mm256_dpbusd_epi32 on unsigned codes (Q8_0: w ^ 0x80 = w + 128) with the offsets removed
// through the Q8K bsums. canon_dot keeps the 32 canonical lanes in two 16-lane FMA
// accumulators and masks the tail so untouched lanes keep their bits.
// Precondition (met by quantize_row_q8k): activation qs in -127..127, bsums = sums of 16 qs.

// GCC 12's AVX-512 intrinsic headers build casts/broadcasts from _mm512_undefined_*(), which
// trips -Wuninitialized/-Wmaybe-uninitialized under -Werror (a known false positive).
// (clang has no -Wmaybe-uninitialized: GCC only.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <atomic>

#include "quant/dot-kernels.h"
#include "quant/dot-x86.h"
#include "quant/ggml-types.h"

namespace qwen3moe {
namespace cpu_tuning {
extern std::atomic<int> g_few_tokens;  // runtime/cpu-tuning.h (only the variables: no inline code from
extern std::atomic<int> g_row_batch;   // a baseline header is instantiated in this AVX-512 unit)
}  // namespace cpu_tuning
namespace {

inline bool dot_rows_few_enabled() { return cpu_tuning::g_few_tokens.load(std::memory_order_relaxed) != 0; }
inline bool row_batch_enabled() { return cpu_tuning::g_row_batch.load(std::memory_order_relaxed) != 0; }

// 512-bit vector of int16: words 0..15 = lo, words 16..31 = hi.
inline __m512i split_words(short lo, short hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(lo)), _mm256_set1_epi16(hi), 1);
}

// Both 256-bit halves from one 256-bit source.
inline __m512i halves(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

// 64-bit lane shift counts: a in lanes 0-3, b in lanes 4-7.
inline __m512i shift_pair(long long a, long long b) { return _mm512_setr_epi64(a, a, a, a, b, b, b, b); }

struct WK4 {
    __m512i q[4];    // [4 chunks][64] unsigned codes: sub-block 2c (low half), 2c+1 (high half)
    __m512i sc[4];   // [4][32] int16 scales matching q[c]'s int16 pair sums
    __m256i m16;     // [16] mins as int16 pairs (one per Q8K bsum)
    float d, dmin;   // super-block scales
};

// Chunk c's int16 scales: words 0-15 = sc_2c, 16-31 = sc_2c+1. One in-lane byte shuffle per chunk
// of the scale bytes broadcast to the four 128-bit lanes (index byte 0x80 gives the zero high
// byte): cheaper than a cross-lane word permute (vpermw is 2 uops on Intel and Zen 4).
inline void k4_scales_x16(const uint8_t* packed, WK4* w) {
    const __m128i sm = k4_scales_sse(packed);
    const __m512i s4 = _mm512_broadcast_i32x4(sm);
    for (int c = 0; c < 4; ++c) {
        const short lo = (short)(0x8000 | (2 * c)), hi = (short)(0x8000 | (2 * c + 1));  // little-endian words
        w->sc[c] = _mm512_shuffle_epi8(s4, split_words(lo, hi));
    }
    const __m256i m32 = _mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8));
    w->m16 = _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16));
}

// 8-lane partial sums of the block's integer sums: lanes of *is sum to isum, of *ms to msum.
inline void parts_k4(const WK4& w, const block_q8k& a, __m256i* is, __m256i* ms) {
    __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
        const __m512i p = _mm512_maddubs_epi16(w.q[c], _mm512_loadu_si512((const void*)(a.qs + 64 * c)));
        acc = _mm512_dpwssd_epi32(acc, p, w.sc[c]);
    }
    *ms = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a.bsums), w.m16);
    *is = _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
}

inline float block_k4(const WK4& w, const block_q8k& a) {
    __m256i is, ms;
    parts_k4(w, a, &is, &ms);
    int32_t isum, msum;
    hsum2_i32x8(is, ms, &isum, &msum);
    return canon_block_q4k(a.d, w.d, w.dmin, isum, msum);
}

// canon_block_q4k on 8 lanes: fma(da*d, (float)isum, -((da*dmin)*(float)msum)).
inline __m256 canon_k4_x8(__m256 da, __m256 d, __m256 dmin, __m256i isum, __m256i msum) {
    const __m256 m = _mm256_mul_ps(_mm256_mul_ps(da, dmin), _mm256_cvtepi32_ps(msum));
    return _mm256_fmadd_ps(_mm256_mul_ps(da, d), _mm256_cvtepi32_ps(isum), _mm256_xor_ps(m, _mm256_set1_ps(-0.0f)));
}

inline void k4_nibbles(const uint8_t* qs, WK4* w) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (int c = 0; c < 4; ++c) {
        const __m256i raw = _mm256_loadu_si256((const __m256i*)(qs + 32 * c));
        w->q[c] = _mm512_and_si512(halves(raw, _mm256_srli_epi16(raw, 4)), m4);
    }
}

struct KQ4K {
    using W = WK4;
    static W decode(const void* row, int64_t b) {
        const block_q4_K& x = static_cast<const block_q4_K*>(row)[b];
        W w;
        k4_nibbles(x.qs, &w);
        k4_scales_x16(x.scales, &w);
        w.d = f16_to_f32_hw(x.d);
        w.dmin = f16_to_f32_hw(x.dmin);
        return w;
    }
    static float block(const W& w, const block_q8k& a) { return block_k4(w, a); }
    static void parts(const W& w, const block_q8k& a, __m256i* is, __m256i* ms) { parts_k4(w, a, is, ms); }
    static float dmin(const W& w) { return w.dmin; }
    static __m256 canon_x8(__m256 da, __m256 d, __m256 dmin, __m256i is, __m256i ms) {
        return canon_k4_x8(da, d, dmin, is, ms);
    }
};

struct KQ5K {
    using W = WK4;
    static W decode(const void* row, int64_t b) {
        const block_q5_K& x = static_cast<const block_q5_K*>(row)[b];
        W w;
        k4_nibbles(x.qs, &w);
        // bit j of qh[l] -> bit 4 of code l of sub-block j: chunk c holds sub-blocks 2c, 2c+1.
        // 64-bit shifts by <= 4 never move a foreign bit into bit 4 of a byte.
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)x.qh));
        const __m512i b4 = _mm512_set1_epi8(0x10);
        w.q[0] = _mm512_or_si512(w.q[0], _mm512_and_si512(_mm512_sllv_epi64(qh, shift_pair(4, 3)), b4));
        w.q[1] = _mm512_or_si512(w.q[1], _mm512_and_si512(_mm512_sllv_epi64(qh, shift_pair(2, 1)), b4));
        w.q[2] = _mm512_or_si512(w.q[2], _mm512_and_si512(_mm512_srlv_epi64(qh, shift_pair(0, 1)), b4));
        w.q[3] = _mm512_or_si512(w.q[3], _mm512_and_si512(_mm512_srlv_epi64(qh, shift_pair(2, 3)), b4));
        k4_scales_x16(x.scales, &w);
        w.d = f16_to_f32_hw(x.d);
        w.dmin = f16_to_f32_hw(x.dmin);
        return w;
    }
    static float block(const W& w, const block_q8k& a) { return block_k4(w, a); }
    static void parts(const W& w, const block_q8k& a, __m256i* is, __m256i* ms) { parts_k4(w, a, is, ms); }
    static float dmin(const W& w) { return w.dmin; }
    static __m256 canon_x8(__m256 da, __m256 d, __m256 dmin, __m256i is, __m256i ms) {
        return canon_k4_x8(da, d, dmin, is, ms);
    }
};

struct KQ6K {
    struct W {
        __m512i q[4];    // [4][64] unsigned codes 0..63 (value + 32), natural order
        __m512i sc[4];   // [4][32] int16: 128-bit lane i of q[k] uses scale 4k+i
        __m256i sc16;    // [16] scales as int16, in order (for the -32 offset via bsums)
        float d;         // super-block scale
    };
    static W decode(const void* row, int64_t b) {
        const block_q6_K& x = static_cast<const block_q6_K*>(row)[b];
        const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
        W w;
        for (int h = 0; h < 2; ++h) {
            const __m512i ql = _mm512_loadu_si512((const void*)(x.ql + 64 * h));
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)(x.qh + 32 * h)));
            // values 128h + 0..63: low nibbles of ql, qh bits 0-1 (first 32) and 2-3 (next 32)
            w.q[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                         _mm512_and_si512(_mm512_sllv_epi64(qh, shift_pair(4, 2)), m30));
            // values 128h + 64..127: high nibbles, qh bits 4-5 and 6-7
            w.q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                             _mm512_and_si512(_mm512_srlv_epi64(qh, shift_pair(0, 2)), m30));
        }
        w.sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)x.scales));
        const __m512i s512 = _mm512_castsi256_si512(w.sc16);
        for (int k = 0; k < 4; ++k) {
            const short s = (short)(4 * k);
            const __m512i idx = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_set_m128i(_mm_set1_epi16((short)(s + 1)), _mm_set1_epi16(s))),
                _mm256_set_m128i(_mm_set1_epi16((short)(s + 3)), _mm_set1_epi16((short)(s + 2))), 1);
            w.sc[k] = _mm512_permutexvar_epi16(idx, s512);
        }
        w.d = f16_to_f32_hw(x.d);
        return w;
    }
    static void parts(const W& w, const block_q8k& a, __m256i* is, __m256i* ms) {
        __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
            const __m512i p = _mm512_maddubs_epi16(w.q[k], _mm512_loadu_si512((const void*)(a.qs + 64 * k)));
            acc = _mm512_dpwssd_epi32(acc, p, w.sc[k]);
        }
        const __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a.bsums), w.sc16);
        const __m256i s = _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
        *is = _mm256_sub_epi32(s, _mm256_slli_epi32(off, 5));
        *ms = _mm256_setzero_si256();
    }
    static float block(const W& w, const block_q8k& a) {
        __m256i is, ms;
        parts(w, a, &is, &ms);
        return canon_block_q6k(a.d, w.d, hsum_i32x8(is));
    }
    static float dmin(const W&) { return 0.0f; }
    // canon_block_q6k on 8 lanes: (da*d)*(float)isum.
    static __m256 canon_x8(__m256 da, __m256 d, __m256, __m256i is, __m256i) {
        return _mm256_mul_ps(_mm256_mul_ps(da, d), _mm256_cvtepi32_ps(is));
    }
};

struct KQ8_0 {
    struct W {
        __m256i u[8];   // [8 blocks][32] codes + 128 (w ^ 0x80) as unsigned bytes
        float dk[8];    // block scales
    };
    static W decode(const void* row, int64_t b) {
        const block_q8_0* x = static_cast<const block_q8_0*>(row) + 8 * b;
        const __m256i flip = _mm256_set1_epi8((char)0x80);
        W w;
        for (int k = 0; k < 8; ++k) {
            w.u[k] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)x[k].qs), flip);
            w.dk[k] = f16_to_f32_hw(x[k].d);
        }
        return w;
    }
    static float block(const W& w, const block_q8k& a) {
        __m256i v[8];
        for (int k = 0; k < 8; ++k)
            v[k] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w.u[k],
                                       _mm256_loadu_si256((const __m256i*)(a.qs + 32 * k)));
        const __m256i pair = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a.bsums), _mm256_set1_epi16(1));
        alignas(32) int32_t isum[8];
        _mm256_store_si256((__m256i*)isum, _mm256_sub_epi32(reduce_i32x8x8(v), _mm256_slli_epi32(pair, 7)));
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
        __m256i v[8];
        for (int k = 0; k < 8; ++k)
            v[k] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w.q[k],
                                       _mm256_loadu_si256((const __m256i*)(a.qs + 32 * k)));
        const __m256i pair = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)a.bsums), _mm256_set1_epi16(1));
        alignas(32) int32_t isum[8];
        _mm256_store_si256((__m256i*)isum, _mm256_sub_epi32(reduce_i32x8x8(v), _mm256_slli_epi32(pair, 3)));
        return canon_block_q8_0(a.d, w.dk, isum);
    }
};

// Transposed K-quant row loops: the integer parts of 8 (block, token) pairs are reduced
// together (reduce_i32x8x8) and their canonical float terms computed 8 lanes at a time, with the
// same per-lane operations as canon_block_* (mul, int->float conversion, fma, sign flip). The
// lane partials get exactly the canon_row_add sequence (ascending b, from +0.0f) and the row
// value the canon_tree32 sequence, so the bits equal dot_rows<K> / dot-ref.cpp.
//
// One token: blocks b0..b0+7 at a time; block b0+k is lane k, added into canonical lane
// (b0 % 32) + k (b0 is a multiple of 8); a masked add covers a final group of < 8 blocks.
template <class K>
void dot_row1_x8(const void* w_row, const block_q8k* a, int64_t nb, float* out) {
    alignas(32) float p[kCanonLanes];
    canon_row_init(p);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t b0 = 0; b0 < nb; b0 += 8) {
        const int cnt = nb - b0 < 8 ? (int)(nb - b0) : 8;
        __m256i is[8], ms[8];
        alignas(32) float d[8] = {0}, dm[8] = {0};
        for (int k = 0; k < cnt; ++k) {
            const typename K::W w = K::decode(w_row, b0 + k);
            K::parts(w, a[b0 + k], &is[k], &ms[k]);
            d[k] = w.d;
            dm[k] = K::dmin(w);
        }
        for (int k = cnt; k < 8; ++k) is[k] = ms[k] = _mm256_setzero_si256();
        const __mmask8 live = (__mmask8)((1u << cnt) - 1u);
        // da: a[b0 + k].d (block_q8k is 73 floats; d first); dead lanes read a[b0].d
        const __m256i idx = _mm256_mullo_epi32(_mm256_maskz_mov_epi32(live, lane), _mm256_set1_epi32(73));
        const __m256 da = _mm256_i32gather_ps(&a[b0].d, idx, 4);
        const __m256 c = K::canon_x8(da, _mm256_load_ps(d), _mm256_load_ps(dm), reduce_i32x8x8(is), reduce_i32x8x8(ms));
        float* pl = p + (b0 % kCanonLanes);
        _mm256_storeu_ps(pl, _mm256_mask_add_ps(_mm256_loadu_ps(pl), live, _mm256_loadu_ps(pl), c));
    }
    out[0] = tree32_mem(p);
}

// Up to kFewTokens tokens: each token gets exactly dot_row1_x8's lanes and sequence (blocks
// b0..b0+7 in lanes 0..7, masked add at lane b0 % 32, tree32), but each weight block is decoded
// once for all of them. dot_rows_x8 pays its per-block decode/reduce/canon for 8 token lanes
// however few tokens there are (an expert gets ~4 of a 64-token prefill); here the reduce and
// canon terms are shared by 8 blocks instead. One core (Zen 4), Q4_K, ns per block x token:
// 2 tokens 13.3 -> 6.8, 4 tokens 8.1 -> 5.3, 8 tokens 5.0 -> 4.6.
constexpr int kFewTokens = 8;  // token chunk (8 tokens x 8 activation blocks stay in L1)
template <class K>
void dot_rows_few(const void* w_row, const block_q8k* a, int64_t a_stride, int n_tok, int64_t nb, float* out,
                  int64_t out_stride) {
    alignas(32) float p[kFewTokens][kCanonLanes];
    for (int j = 0; j < n_tok; ++j) canon_row_init(p[j]);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t b0 = 0; b0 < nb; b0 += 8) {
        const int cnt = nb - b0 < 8 ? (int)(nb - b0) : 8;
        __m256i is[kFewTokens][8], ms[kFewTokens][8];
        alignas(32) float d[8] = {0}, dm[8] = {0};
        for (int k = 0; k < cnt; ++k) {
            const typename K::W w = K::decode(w_row, b0 + k);
            for (int j = 0; j < n_tok; ++j) K::parts(w, a[j * a_stride + b0 + k], &is[j][k], &ms[j][k]);
            d[k] = w.d;
            dm[k] = K::dmin(w);
        }
        for (int j = 0; j < n_tok; ++j)
            for (int k = cnt; k < 8; ++k) is[j][k] = ms[j][k] = _mm256_setzero_si256();
        const __mmask8 live = (__mmask8)((1u << cnt) - 1u);
        const __m256i idx = _mm256_mullo_epi32(_mm256_maskz_mov_epi32(live, lane), _mm256_set1_epi32(73));
        const __m256 dv = _mm256_load_ps(d), dmv = _mm256_load_ps(dm);
        for (int j = 0; j < n_tok; ++j) {
            const __m256 da = _mm256_i32gather_ps(&a[j * a_stride + b0].d, idx, 4);
            const __m256 c = K::canon_x8(da, dv, dmv, reduce_i32x8x8(is[j]), reduce_i32x8x8(ms[j]));
            float* pl = p[j] + (b0 % kCanonLanes);
            _mm256_storeu_ps(pl, _mm256_mask_add_ps(_mm256_loadu_ps(pl), live, _mm256_loadu_ps(pl), c));
        }
    }
    for (int j = 0; j < n_tok; ++j) out[(int64_t)j * out_stride] = tree32_mem(p[j]);
}

// Short rows (nb <= 16 blocks: the experts' down rows of 768 values = 3 blocks, the 2048-wide
// gate/up/q/k/v rows = 8, the 4096-wide o-proj rows = 16): every canonical lane gets at most one
// block, so lane b of token t is exactly 0.0f + c_(b, t) and lanes nb..31 stay +0.0f. The (token, block) pairs of a
// chunk of tokens are packed 8 to a vector (pair i = j * nb + b) for the reduce and the canon
// terms, so a 3-block row does not leave 5 of 8 lanes idle per token, and the row value is
// tree32_x8 on registers (no 32-float partials in memory). Same operations per lane as
// dot_row1_x8 / canon_block_*, so the same bits.
constexpr int kSmallPairs = 128;  // pairs per chunk at most (16 groups of 8; 128 x 2 x 32 B of int parts)
template <class K>
void dot_rows_small(const void* w_row, const block_q8k* a, int64_t a_stride, int n_tok, int64_t nb, float* out,
                    int64_t out_stride) {
    const int nbi = (int)nb;
    // tokens per chunk: 64 pairs for nb <= 8 (>= 8 tokens), 8 tokens for nb 9..16; the chunk's
    // activation blocks stay in L1 (<= 64 x 292 B = 18.7 KB for nb <= 8)
    const int chunk = nbi <= 8 ? 64 / nbi : 8;
    for (int t0 = 0; t0 < n_tok; t0 += chunk) {
        const int nt = n_tok - t0 < chunk ? n_tok - t0 : chunk;
        const int np = nt * nbi, ng = (np + 7) / 8;
        const block_q8k* at = a + (int64_t)t0 * a_stride;
        __m256i is[kSmallPairs], ms[kSmallPairs];
        alignas(32) float dap[kSmallPairs], dp[kSmallPairs], dmp[kSmallPairs], cb[kSmallPairs + 16];
        for (int b = 0; b < nbi; ++b) {
            const typename K::W w = K::decode(w_row, b);
            const float dmin = K::dmin(w);
            for (int j = 0, i = b; j < nt; ++j, i += nbi) {
                const int64_t blk = (int64_t)j * a_stride + b;
                K::parts(w, at[blk], &is[i], &ms[i]);
                dap[i] = at[blk].d;  // scalar copies: cheaper than a gather per 8 pairs
                dp[i] = w.d;
                dmp[i] = dmin;
            }
        }
        for (int i = np; i < 8 * ng; ++i) {  // dead lanes: zero parts and scales
            is[i] = ms[i] = _mm256_setzero_si256();
            dap[i] = dp[i] = dmp[i] = 0.0f;
        }
        const __m256 zero = _mm256_setzero_ps();
        for (int g = 0; g < ng; ++g) {
            const __m256 c = K::canon_x8(_mm256_load_ps(dap + 8 * g), _mm256_load_ps(dp + 8 * g), _mm256_load_ps(dmp + 8 * g),
                                         reduce_i32x8x8(is + 8 * g), reduce_i32x8x8(ms + 8 * g));
            // canon_row_add onto +0.0f would be 0.0f + c; with nb <= 16 the tree's first step
            // adds +0.0f (lane b + 16) to every live lane anyway, so the extra add cannot change a bit
            _mm256_store_ps(cb + 8 * g, c);
        }
        // lanes 0-7 and 8-15 of token j (blocks nb.. are +0.0f), lanes 16-31 +0.0f
        const __mmask8 live0 = (__mmask8)((1u << (nbi < 8 ? nbi : 8)) - 1u);
        const __mmask8 live1 = (__mmask8)((1u << (nbi > 8 ? nbi - 8 : 0)) - 1u);
        for (int j = 0; j < nt; ++j)
            out[(int64_t)(t0 + j) * out_stride] = tree32_x8(_mm256_maskz_loadu_ps(live0, cb + j * nbi),
                                                            _mm256_maskz_loadu_ps(live1, cb + j * nbi + 8), zero, zero);
    }
}

// One token, many short rows (nb <= 16): dot_rows_small with (row, block) pairs in the place of
// (token, block) pairs — pair i = row * nb + b of a chunk of rows packed 8 to a vector for the
// reduce and the canon terms (the same per-lane operations; every row reads the same
// activation blocks), then each row's tree32_x8 on its nb lanes. dot_row1_x8 pays one 8-lane
// reduce and canon step per row even for a 3-block row (the experts' down rows: 5 of 8 lanes
// idle), plus the 32-float partials in memory and the call; here 8 pairs share them.
// Rows per chunk: 64 pairs for nb <= 8 (21 rows of 3 blocks, 8 of 8), 8 rows for nb 9..16.
template <class K>
void dot_rows1_small(const uint8_t* w, size_t rb, int64_t n_rows, const block_q8k* a, int64_t nb, float* out,
                     int64_t prefetch) {
    const int nbi = (int)nb;
    const int chunk = nbi <= 8 ? 64 / nbi : 8;
    const uint8_t* const end = w + (size_t)n_rows * rb;
    const uint8_t* next = w;
    const __mmask8 live0 = (__mmask8)((1u << (nbi < 8 ? nbi : 8)) - 1u);
    const __mmask8 live1 = (__mmask8)((1u << (nbi > 8 ? nbi - 8 : 0)) - 1u);
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t r0 = 0; r0 < n_rows; r0 += chunk) {
        const int nr = n_rows - r0 < chunk ? (int)(n_rows - r0) : chunk;
        if (prefetch > 0) prefetch_rows_upto(next, w + (size_t)(r0 + nr) * rb + prefetch, end);
        const int np = nr * nbi, ng = (np + 7) / 8;
        __m256i is[kSmallPairs], ms[kSmallPairs];
        alignas(32) float dap[kSmallPairs], dp[kSmallPairs], dmp[kSmallPairs], cb[kSmallPairs + 16];
        for (int rr = 0; rr < nr; ++rr) {
            const void* row = w + (size_t)(r0 + rr) * rb;
            for (int b = 0, i = rr * nbi; b < nbi; ++b, ++i) {
                const typename K::W wd = K::decode(row, b);
                K::parts(wd, a[b], &is[i], &ms[i]);
                dap[i] = a[b].d;
                dp[i] = wd.d;
                dmp[i] = K::dmin(wd);
            }
        }
        for (int i = np; i < 8 * ng; ++i) {  // dead lanes: zero parts and scales
            is[i] = ms[i] = _mm256_setzero_si256();
            dap[i] = dp[i] = dmp[i] = 0.0f;
        }
        for (int g = 0; g < ng; ++g)
            _mm256_store_ps(cb + 8 * g, K::canon_x8(_mm256_load_ps(dap + 8 * g), _mm256_load_ps(dp + 8 * g),
                                                    _mm256_load_ps(dmp + 8 * g), reduce_i32x8x8(is + 8 * g),
                                                    reduce_i32x8x8(ms + 8 * g)));
        // as in dot_rows_small: lane b of a row is c_b (the canonical 0.0f + c_b differs only
        // in the sign of a zero, which the tree's first +0.0f step removes either way)
        for (int rr = 0; rr < nr; ++rr)
            out[r0 + rr] = tree32_x8(_mm256_maskz_loadu_ps(live0, cb + rr * nbi),
                                     _mm256_maskz_loadu_ps(live1, cb + rr * nbi + 8), zero, zero);
    }
}

// Several tokens: 8 tokens at a time share each decoded weight block; token t0+j is lane j.
template <class K>
void dot_rows_x8(const void* w_row, const block_q8k* a, int64_t a_stride, int n_tok, int64_t nb, float* out,
                 int64_t out_stride) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int t0 = 0; t0 < n_tok; t0 += 8) {
        const int nt = n_tok - t0 < 8 ? n_tok - t0 : 8;
        const __mmask8 live = (__mmask8)((1u << nt) - 1u);
        const block_q8k* at = a + (int64_t)t0 * a_stride;
        const __m256i idx = _mm256_mullo_epi32(_mm256_maskz_mov_epi32(live, lane), _mm256_set1_epi32((int)(a_stride * 73)));
        __m256 p[kCanonLanes];
        for (int l = 0; l < kCanonLanes; ++l) p[l] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; ++b) {
            const typename K::W w = K::decode(w_row, b);
            __m256i is[8], ms[8];
            for (int j = 0; j < nt; ++j) K::parts(w, at[j * a_stride + b], &is[j], &ms[j]);
            for (int j = nt; j < 8; ++j) is[j] = ms[j] = _mm256_setzero_si256();
            const __m256 da = _mm256_i32gather_ps(&at[b].d, idx, 4);
            const __m256 c = K::canon_x8(da, _mm256_set1_ps(w.d), _mm256_set1_ps(K::dmin(w)), reduce_i32x8x8(is),
                                         reduce_i32x8x8(ms));
            p[b % kCanonLanes] = _mm256_add_ps(p[b % kCanonLanes], c);
        }
        for (int s = kCanonLanes / 2; s >= 1; s >>= 1)
            for (int l = 0; l < s; ++l) p[l] = _mm256_add_ps(p[l], p[l + s]);
        alignas(32) float r[8];
        _mm256_store_ps(r, p[0]);
        for (int j = 0; j < nt; ++j) out[(int64_t)(t0 + j) * out_stride] = r[j];
    }
}

template <class K>
void dot_rows_k(const void* w_row, const block_q8k* a, int64_t a_stride, int n_tok, int64_t nb, float* out,
                int64_t out_stride) {
    if (n_tok == 1) {
        dot_row1_x8<K>(w_row, a, nb, out);
    } else if (nb <= 16 && dot_rows_few_enabled()) {
        dot_rows_small<K>(w_row, a, a_stride, n_tok, nb, out, out_stride);
    } else if (dot_rows_few_enabled()) {
        // tokens in ceil(n_tok / 8) near-equal chunks of <= kFewTokens
        const int nc = (n_tok + kFewTokens - 1) / kFewTokens;
        for (int c = 0; c < nc; ++c) {
            const int t0 = n_tok * c / nc, t1 = n_tok * (c + 1) / nc;
            dot_rows_few<K>(w_row, a + (int64_t)t0 * a_stride, a_stride, t1 - t0, nb, out + (int64_t)t0 * out_stride,
                            out_stride);
        }
    } else if (a_stride > (1 << 20)) {  // gather offsets (int32 floats) would overflow
        dot_rows<K>(w_row, a, a_stride, n_tok, nb, out, out_stride);
    } else {
        dot_rows_x8<K>(w_row, a, a_stride, n_tok, nb, out, out_stride);
    }
}

void dot_q8k_avx512(uint32_t type, const void* w_row, const block_q8k* a, int64_t a_stride, int n_tok, int64_t n,
                    float* out, int64_t out_stride) {
    const int64_t nb = n / QK_K;
    switch (type) {
        case GGML_TYPE_Q4_K: dot_rows_k<KQ4K>(w_row, a, a_stride, n_tok, nb, out, out_stride); break;
        case GGML_TYPE_Q5_K: dot_rows_k<KQ5K>(w_row, a, a_stride, n_tok, nb, out, out_stride); break;
        case GGML_TYPE_Q6_K: dot_rows_k<KQ6K>(w_row, a, a_stride, n_tok, nb, out, out_stride); break;
        case GGML_TYPE_Q8_0: dot_rows<KQ8_0>(w_row, a, a_stride, n_tok, nb, out, out_stride); break;
        case GGML_TYPE_Q4_0: dot_rows<KQ4_0>(w_row, a, a_stride, n_tok, nb, out, out_stride); break;
        default: break;  // validated by the dispatcher
    }
}

void dot_q8k_rows1_avx512(uint32_t type, const uint8_t* w, size_t row_bytes, int64_t n_rows, const block_q8k* a,
                          int64_t n, float* out, int64_t prefetch) {
    const int64_t nb = n / QK_K;
    if (nb >= 1 && nb <= 16 && dot_rows_few_enabled() && row_batch_enabled()) {
        switch (type) {
            case GGML_TYPE_Q4_K: dot_rows1_small<KQ4K>(w, row_bytes, n_rows, a, nb, out, prefetch); return;
            case GGML_TYPE_Q5_K: dot_rows1_small<KQ5K>(w, row_bytes, n_rows, a, nb, out, prefetch); return;
            case GGML_TYPE_Q6_K: dot_rows1_small<KQ6K>(w, row_bytes, n_rows, a, nb, out, prefetch); return;
            default: break;
        }
    }
    rows1_loop(w, row_bytes, n_rows, prefetch,
               [&](int64_t r) { dot_q8k_avx512(type, w + (size_t)r * row_bytes, a, 0, 1, n, out + r, 0); });
}

// canon_dot_ref with lanes 0-15 in p0 and 16-31 in p1; the tail is masked so lanes without an
// element are not touched (an extra +0 could turn a -0 partial into +0).
float canon_dot_avx512(const float* a, const float* b, int64_t n) {
    __m512 p0 = _mm512_setzero_ps(), p1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        p0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), p0);
        p1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), p1);
    }
    const int64_t r = n - i;
    if (r > 0) {
        const __mmask16 k0 = (__mmask16)(r >= 16 ? 0xffff : (1u << r) - 1u);
        const __mmask16 k1 = (__mmask16)(r <= 16 ? 0 : (1u << (r - 16)) - 1u);
        p0 = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(k0, a + i), _mm512_maskz_loadu_ps(k0, b + i), p0, k0);
        p1 = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(k1, a + i + 16), _mm512_maskz_loadu_ps(k1, b + i + 16), p1, k1);
    }
    const __m512 q = _mm512_add_ps(p0, p1);  // s = 16
    const __m256 r8 = _mm256_add_ps(_mm512_castps512_ps256(q), _mm512_extractf32x8_ps(q, 1));  // s = 8
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(r8), _mm256_extractf128_ps(r8, 1));           // s = 4
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));                                                      // s = 2
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));                                                  // s = 1
    return _mm_cvtss_f32(x);
}

void quantize_q8k_avx512(const float* x, block_q8k* y, int64_t n) { quantize_q8k_x8(x, y, n); }

}  // namespace

const DotKernels kDotKernelsAvx512 = {"avx512vnni", dot_q8k_avx512, dot_q8k_rows1_avx512, canon_dot_avx512,
                                      quantize_q8k_avx512, axpy_x8, swiglu_x8, f16_to_f32_x8};

}  // namespace qwen3moe
