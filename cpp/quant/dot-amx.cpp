// dot-amx.cpp — Q4_K / Q6_K rows x Q8K tokens on Intel AMX int8 tiles (batches of tokens).
//
// Same bits as dot-ref.cpp: only the exact integer sums move to the tile unit; the float part
// is dot-canon.h's expression per (row, token, block) and the canonical 32-lane row sum.
//
// The per-sub-block scales are folded into the weight bytes, so one tile product per 64 values
// gives the whole block's scaled integer sum: v = sc_j * q is split as v = 128 * hi + lo with
// lo = v & 127 (unsigned byte) and hi = v >> 7 (Q4_K: 0..7; Q6_K: -32..32, signed), and
//   sum_i v_i a_i = sum_i lo_i a_i + 128 * sum_i hi_i a_i        (exact int32, any order)
// as two accumulators C_lo (TDPBUSD) and C_hi (TDPBUSD / TDPBSSD) over the four 64-value chunks.
//  * Q4_K: isum = C_lo + 128 C_hi; msum = sum_j m_j * (sum of sub-block j's activations), by
//    VNNI on int16 pairs of those sums (|sum| <= 32 * 127).
//  * Q6_K: v = sc_j * (stored - 32) in -4064..4096 (hi in -32..32, signed: TDPBSSD), so
//    isum = C_lo + 128 C_hi directly.
// Tiles: A = 16 weight rows x 64 bytes (values 64c..64c+63 of block b), B = the activation tile
// of q8k_tiles_prepare (16 rows of 4 consecutive values x 16 tokens), C = 16 rows x 16 tokens.
// Rows are taken 16 at a time (a partial last tile computes garbage rows that are never
// written out); for each block the 16 rows' A bytes are made once and reused by every token
// tile, two token tiles per pass (four independent tile accumulators). Compiled with AVX-512 +
// AMX flags; only reached through dot-dispatch.cpp when the CPU and OS allow AMX
// (q8k_tiles_available).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "quant/blocks.h"
#include "quant/dot-canon.h"
#include "quant/dot-tiles.h"
#include "quant/ggml-types.h"

namespace qwen3moe {
namespace {

struct alignas(64) TileConfig {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

// tmm0-3: C_lo/C_hi of two token tiles (16 x 16 int32); tmm4/5: A_lo/A_hi (16 rows x 64
// bytes); tmm6/7: the two token tiles' B.
void load_tile_config() {
    TileConfig c;
    for (int t = 0; t < 8; ++t) {
        c.rows[t] = 16;
        c.colsb[t] = 64;
    }
    _tile_loadconfig(&c);
}

// Per-thread work space (raw memory: no std containers in this ISA-flagged unit).
struct Scratch {
    uint8_t* a = nullptr;  // [2][4 chunks][16 rows][64]: A_lo then A_hi, one block
    int32_t* c = nullptr;  // [2 token tiles][2][16][16]: C_lo then C_hi
    float* p = nullptr;    // [token tiles][16 rows][32 lanes][16 tokens]: the lane partials
    size_t p_tiles = 0;
    ~Scratch() {
        std::free(a);
        std::free(c);
        std::free(p);
    }
    bool ensure(size_t tiles) {
        if (!a) {
            a = static_cast<uint8_t*>(std::aligned_alloc(64, 2 * 4 * 16 * 64));
            c = static_cast<int32_t*>(std::aligned_alloc(64, 4 * 16 * 16 * 4));
            if (!a || !c) return false;
            std::memset(a, 0, 2 * 4 * 16 * 64);
        }
        if (tiles > p_tiles) {
            std::free(p);
            p = static_cast<float*>(std::aligned_alloc(64, tiles * 16 * 32 * 16 * sizeof(float)));
            p_tiles = p ? tiles : 0;
            if (!p) return false;
        }
        return true;
    }
};
thread_local Scratch t_scratch;

// ---- A bytes of one weight row for one block ------------------------------------------
// out_lo/out_hi: chunk c of this row at + c * 1024 (16 rows x 64 bytes per chunk).
//
// v = sc * q for 64 values at once: _mm512_maddubs_epi16 of the unsigned codes with the scale
// bytes in the even (odd) byte of each pair and 0 in the other gives the int16 product of every
// even (odd) value, exactly (|sc * q| <= 128 * 63 < 2^15: no saturation); then
// lo = v & 127 and hi = v >> 7 (arithmetic) go back to bytes in place: the even value's byte
// in the low half of each 16-bit lane, the odd value's in the high half.
inline void split_store(__m512i v_even, __m512i v_odd, uint8_t* lo, uint8_t* hi) {
    const __m512i m7 = _mm512_set1_epi16(127);
    const __m512i lo_b = _mm512_or_si512(_mm512_and_si512(v_even, m7), _mm512_slli_epi16(_mm512_and_si512(v_odd, m7), 8));
    const __m512i hi_b = _mm512_or_si512(_mm512_and_si512(_mm512_srai_epi16(v_even, 7), _mm512_set1_epi16(0xff)),
                                         _mm512_slli_epi16(_mm512_srai_epi16(v_odd, 7), 8));
    _mm512_store_si512((void*)lo, lo_b);
    _mm512_store_si512((void*)hi, hi_b);
}

// Q4_K: chunk c holds sub-block 2c (low nibbles of qs[32c..32c+31]) then 2c+1 (high nibbles).
// mpair[i] = m_2i | m_2i+1 << 16 (the mins against the activation sub-block sums).
inline void a_row_q4k(const block_q4_K& blk, uint8_t* out_lo, uint8_t* out_hi, int32_t* mpair, float* d,
                      float* dmin) {
    uint32_t sm[4];
    k4_unpack_scales(blk.scales, sm);
    uint8_t sc[16];
    std::memcpy(sc, sm, 16);  // sc[0..7] scales, sc[8..15] mins
    const __m512i even = _mm512_set1_epi16(0x00ff), nib = _mm512_set1_epi8(15);
    for (int c = 0; c < 4; ++c) {
        const __m256i q8 = _mm256_loadu_si256((const __m256i*)(blk.qs + 32 * c));
        const __m512i q = _mm512_and_si512(
            _mm512_inserti64x4(_mm512_castsi256_si512(q8), _mm256_srli_epi16(q8, 4), 1), nib);
        const __m512i s = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi8((char)sc[2 * c])),
                                             _mm256_set1_epi8((char)sc[2 * c + 1]), 1);
        split_store(_mm512_maddubs_epi16(q, _mm512_and_si512(s, even)), _mm512_maddubs_epi16(q, _mm512_andnot_si512(even, s)),
                    out_lo + c * 1024, out_hi + c * 1024);
    }
    for (int i = 0; i < 4; ++i) mpair[i] = (int32_t)((uint32_t)sc[8 + 2 * i] | ((uint32_t)sc[9 + 2 * i] << 16));
    *d = canon_f16_to_f32(blk.d);
    *dmin = canon_f16_to_f32(blk.dmin);
}

// Q6_K: chunk c = values 64c..64c+63 = half h = c / 2, groups s = 2(c & 1) and s + 1; value
// 128h + 32s + l = ((ql[64h + 32(s & 1) + l] >> 4(s >> 1)) & 15) | (((qh[32h + l] >> 2s) & 3) << 4),
// stored + 32; scales[j] covers values 16j..16j+15. v = sc * stored - 32 sc = sc * (stored - 32).
inline void a_row_q6k(const block_q6_K& blk, uint8_t* out_lo, uint8_t* out_hi, float* d) {
    const __m512i even = _mm512_set1_epi16(0x00ff), nib = _mm512_set1_epi8(15), two = _mm512_set1_epi8(3);
    const __m512i sc4 = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i*)blk.scales));
    for (int c = 0; c < 4; ++c) {
        const int h = c >> 1;
        const __m512i ql = _mm512_loadu_si512((const void*)(blk.ql + 64 * h));
        const __m512i lo4 = _mm512_and_si512((c & 1) ? _mm512_srli_epi16(ql, 4) : ql, nib);
        const __m256i qh8 = _mm256_loadu_si256((const __m256i*)(blk.qh + 32 * h));
        // groups s (bytes 0-31) and s + 1 (bytes 32-63): (qh >> 2s) & 3 and (qh >> 2s + 2) & 3
        const __m512i qh2 = _mm512_inserti64x4(_mm512_castsi256_si512(qh8), _mm256_srli_epi16(qh8, 2), 1);
        const __m512i hi2 = _mm512_and_si512((c & 1) ? _mm512_srli_epi16(qh2, 4) : qh2, two);
        const __m512i q = _mm512_or_si512(lo4, _mm512_slli_epi16(hi2, 4));  // stored values 0..63
        // byte k of the chunk's scale vector: scales[4c + k / 16] (an in-lane shuffle of the broadcast)
        const __m512i lane = _mm512_set_epi32(0x03030303, 0x03030303, 0x03030303, 0x03030303, 0x02020202, 0x02020202,
                                              0x02020202, 0x02020202, 0x01010101, 0x01010101, 0x01010101, 0x01010101,
                                              0, 0, 0, 0);
        const __m512i s = _mm512_shuffle_epi8(sc4, _mm512_add_epi8(lane, _mm512_set1_epi8((char)(4 * c))));
        // 32 * sc as int16 per pair (both values of a pair share the sub-block)
        const __m512i sc32 = _mm512_slli_epi16(_mm512_srai_epi16(_mm512_slli_epi16(s, 8), 8), 5);
        split_store(_mm512_sub_epi16(_mm512_maddubs_epi16(q, _mm512_and_si512(s, even)), sc32),
                    _mm512_sub_epi16(_mm512_maddubs_epi16(q, _mm512_andnot_si512(even, s)), sc32), out_lo + c * 1024,
                    out_hi + c * 1024);
    }
    *d = canon_f16_to_f32(blk.d);
}
// The canonical row sum of lanes 0..nb-1 (nb <= 32; lanes >= nb are +0.0f) for 16 tokens:
// for s = 16, 8, 4, 2, 1: p[l] = p[l] + p[l + s].
inline __m512 tree32_tokens(const float* p, int nb) {
    __m512 v[32];
    for (int l = 0; l < 32; ++l) v[l] = l < nb ? _mm512_load_ps(p + 16 * l) : _mm512_setzero_ps();
    for (int s = 16; s >= 1; s >>= 1)
        for (int l = 0; l < s; ++l) v[l] = _mm512_add_ps(v[l], v[l + s]);
    return v[0];
}

// The products of one block for token tile tt (item0) and, when Two, tt + 1 (item1): tmm k is
// stored to c + 256 k (k = 0, 1: tile tt lo, hi; 2, 3: tile tt + 1). Four independent
// accumulators; the A tiles are loaded once for both token tiles.
template <bool Q6, bool Two>
inline void block_products(const uint8_t* a_lo, const uint8_t* a_hi, const uint8_t* item0, const uint8_t* item1,
                           int32_t* c) {
    _tile_zero(0);
    _tile_zero(1);
    if (Two) {
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int k = 0; k < 4; ++k) {
        _tile_loadd(4, a_lo + k * 1024, 64);
        _tile_loadd(5, a_hi + k * 1024, 64);
        _tile_loadd(6, item0 + k * 1024, 64);
        if (Two) _tile_loadd(7, item1 + k * 1024, 64);
        _tile_dpbusd(0, 4, 6);
        if (Q6)
            _tile_dpbssd(1, 5, 6);
        else
            _tile_dpbusd(1, 5, 6);
        if (Two) {
            _tile_dpbusd(2, 4, 7);
            if (Q6)
                _tile_dpbssd(3, 5, 7);
            else
                _tile_dpbusd(3, 5, 7);
        }
    }
    _tile_stored(0, c, 64);
    _tile_stored(1, c + 256, 64);
    if (Two) {
        _tile_stored(2, c + 512, 64);
        _tile_stored(3, c + 768, 64);
    }
}

// The float contributions of block b for the mr rows of one token tile into its lane partials
// p (nb <= 32: lane b holds one block, p = +0.0f + c_b).
template <bool Q6>
inline void block_post(const int32_t* c_lo, const int32_t* c_hi, const uint8_t* item, const int32_t (*mpair)[4],
                       const float* dw, const float* dm, int mr, int64_t b, float* p) {
    const __m512 zero = _mm512_setzero_ps(), sign = _mm512_set1_ps(-0.0f);
    const __m512 da = _mm512_loadu_ps(reinterpret_cast<const float*>(item + kQ8kTileDaOffset));
    const int32_t* bs = reinterpret_cast<const int32_t*>(item + kQ8kTileBsOffset);
    __m512i bsv[4];
    if (!Q6)
        for (int i = 0; i < 4; ++i) bsv[i] = _mm512_loadu_si512(bs + 16 * i);
    for (int r = 0; r < mr; ++r) {
        const __m512i isum =
            _mm512_add_epi32(_mm512_load_si512(c_lo + 16 * r), _mm512_slli_epi32(_mm512_load_si512(c_hi + 16 * r), 7));
        __m512 cb;
        if (Q6) {  // canon_block_q6k: (da * d) * isum
            cb = _mm512_mul_ps(_mm512_mul_ps(da, _mm512_set1_ps(dw[r])), _mm512_cvtepi32_ps(isum));
        } else {  // canon_block_q4k: canon_fma(da * d, isum, -((da * dmin) * msum))
            __m512i msum = _mm512_setzero_si512();
            for (int i = 0; i < 4; ++i) msum = _mm512_dpwssd_epi32(msum, bsv[i], _mm512_set1_epi32(mpair[r][i]));
            const __m512 mterm = _mm512_mul_ps(_mm512_mul_ps(da, _mm512_set1_ps(dm[r])), _mm512_cvtepi32_ps(msum));
            cb = _mm512_fmadd_ps(_mm512_mul_ps(da, _mm512_set1_ps(dw[r])), _mm512_cvtepi32_ps(isum),
                                 _mm512_xor_ps(mterm, sign));
        }
        _mm512_store_ps(p + ((size_t)r * 32 + (size_t)b) * 16, _mm512_add_ps(zero, cb));
    }
}

template <bool Q6>
bool tiles_dot(const uint8_t* w, size_t row_bytes, int64_t n_rows, const uint8_t* acts, int n_tok, int64_t nb,
               float* out, int64_t out_stride) {
    Scratch& sc = t_scratch;
    const int ntt = (n_tok + 15) / 16;
    if (!sc.ensure((size_t)ntt)) return false;  // (32 KiB per token tile; the caller throws)
    load_tile_config();
    uint8_t* const a_lo = sc.a;
    uint8_t* const a_hi = sc.a + 4 * 16 * 64;
    const size_t blk_bytes = Q6 ? sizeof(block_q6_K) : sizeof(block_q4_K);
    const size_t p_tile = (size_t)16 * 32 * 16;  // floats of one token tile's lane partials
    int32_t mpair[16][4];
    float dw[16], dm[16];
    for (int64_t r0 = 0; r0 < n_rows; r0 += 16) {
        const int mr = n_rows - r0 < 16 ? (int)(n_rows - r0) : 16;
        for (int64_t b = 0; b < nb; ++b) {
            for (int r = 0; r < mr; ++r) {
                const uint8_t* blk = w + (size_t)(r0 + r) * row_bytes + (size_t)b * blk_bytes;
                if (Q6)
                    a_row_q6k(*reinterpret_cast<const block_q6_K*>(blk), a_lo + 64 * r, a_hi + 64 * r, &dw[r]);
                else
                    a_row_q4k(*reinterpret_cast<const block_q4_K*>(blk), a_lo + 64 * r, a_hi + 64 * r, mpair[r], &dw[r],
                              &dm[r]);
            }
            for (int tt = 0; tt < ntt; tt += 2) {
                const uint8_t* item0 = acts + ((size_t)tt * (size_t)nb + (size_t)b) * kQ8kTileItemBytes;
                const bool two = tt + 1 < ntt;
                const uint8_t* item1 = two ? item0 + (size_t)nb * kQ8kTileItemBytes : nullptr;
                if (two)
                    block_products<Q6, true>(a_lo, a_hi, item0, item1, sc.c);
                else
                    block_products<Q6, false>(a_lo, a_hi, item0, item1, sc.c);
                block_post<Q6>(sc.c, sc.c + 256, item0, mpair, dw, dm, mr, b, sc.p + (size_t)tt * p_tile);
                if (two)
                    block_post<Q6>(sc.c + 512, sc.c + 768, item1, mpair, dw, dm, mr, b, sc.p + (size_t)(tt + 1) * p_tile);
            }
        }
        for (int tt = 0; tt < ntt; ++tt) {
            const float* p = sc.p + (size_t)tt * p_tile;
            const int nt = n_tok - 16 * tt < 16 ? n_tok - 16 * tt : 16;
            for (int r = 0; r < mr; ++r) {
                alignas(64) float y[16];
                _mm512_store_ps(y, tree32_tokens(p + (size_t)r * 32 * 16, (int)nb));
                for (int t = 0; t < nt; ++t) out[(int64_t)(16 * tt + t) * out_stride + r0 + r] = y[t];
            }
        }
    }
    _tile_release();
    return true;
}

}  // namespace

bool q8k_tiles_dot_amx(uint32_t type, const uint8_t* w, size_t row_bytes, int64_t n_rows, const uint8_t* acts,
                       int n_tok, int64_t nb, float* out, int64_t out_stride) {
    if (type == GGML_TYPE_Q6_K) return tiles_dot<true>(w, row_bytes, n_rows, acts, n_tok, nb, out, out_stride);
    return tiles_dot<false>(w, row_bytes, n_rows, acts, n_tok, nb, out, out_stride);
}

}  // namespace qwen3moe
