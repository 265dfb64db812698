// dot-amx.cpp — Q4_K / Q6_K rows x Q8K tokens on Intel AMX int8 tiles (batches of tokens).
//
// Same bits as dot-ref.cpp: only the exact integer sums move to the tile unit; the float part
// is dot-canon.h's expression per (row, token, block) and the canonical 32-lane row sum.
//
// The per-sub-block scales are folded into the weight bytes, so one tile product per 64 values
// gives the whole block's scaled integer sum: v = sc_j * q is split as v = 128 * hi + lo with
// lo = v & 127 (unsigned byte) and hi = v >> 7 (Q4_K: 0..7 unsigned; Q6_K: -63..62 signed), and
//   sum_i v_i a_i = sum_i lo_i a_i + 128 * sum_i hi_i a_i        (exact int32, any order)
// as two accumulators C_lo (TDPBUSD) and C_hi (TDPBUSD / TDPBSSD) over the four 64-value chunks.
//  * Q4_K: isum = C_lo + 128 C_hi; msum = sum_j m_j (bsums_2j + bsums_2j+1) (VNNI, int16 pairs).
//  * Q6_K: q = stored - 32, so isum = sum_j sc_j sum_i stored_i a_i - 32 sum_j sc_j bsums_j.
// Tiles: A = 16 weight rows x 64 bytes (values 64c..64c+63 of block b), B = the activation tile
// of q8k_tiles_prepare (16 rows of 4 consecutive values x 16 tokens), C = 16 rows x 16 tokens.
// Rows are taken 16 at a time (a partial last tile computes garbage rows that are never
// written out); for each block the 16 rows' A bytes are made once and reused by every token
// tile. Compiled with AVX-512 + AMX flags; only reached through dot-dispatch.cpp when the CPU
// and OS allow AMX (q8k_tiles_available).
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

// tmm0/1: C_lo/C_hi (16 x 16 int32); tmm4/5: A_lo/A_hi (16 rows x 64 bytes); tmm6: B.
void load_tile_config() {
    TileConfig c;
    const int used[5] = {0, 1, 4, 5, 6};
    for (int t : used) {
        c.rows[t] = 16;
        c.colsb[t] = 64;
    }
    _tile_loadconfig(&c);
}

// Per-thread work space (raw memory: no std containers in this ISA-flagged unit).
struct Scratch {
    uint8_t* a = nullptr;  // [2][4 chunks][16 rows][64]: A_lo then A_hi, one block
    int32_t* c = nullptr;  // [2][16][16]: C_lo then C_hi of one (block, token tile)
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
            c = static_cast<int32_t*>(std::aligned_alloc(64, 2 * 16 * 16 * 4));
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

// v (int16, |v| < 2^13) -> lo = v & 127 and hi = v >> 7 (arithmetic) as bytes, 32 values.
inline void split_store(__m512i v, uint8_t* lo, uint8_t* hi) {
    _mm256_store_si256((__m256i*)lo, _mm512_cvtepi16_epi8(_mm512_and_si512(v, _mm512_set1_epi16(127))));
    _mm256_store_si256((__m256i*)hi, _mm512_cvtepi16_epi8(_mm512_srai_epi16(v, 7)));
}

// Q4_K: chunk c holds sub-block 2c (low nibbles of qs[32c..32c+31]) then 2c+1 (high nibbles).
inline void a_row_q4k(const block_q4_K& blk, uint8_t* out_lo, uint8_t* out_hi, int32_t* mpair, float* d,
                      float* dmin) {
    uint32_t sm[4];
    k4_unpack_scales(blk.scales, sm);
    uint8_t sc[16];
    std::memcpy(sc, sm, 16);  // sc[0..7] scales, sc[8..15] mins
    for (int c = 0; c < 4; ++c) {
        const __m512i q16 = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i*)(blk.qs + 32 * c)));
        const __m512i lo4 = _mm512_and_si512(q16, _mm512_set1_epi16(15));
        const __m512i hi4 = _mm512_srli_epi16(q16, 4);
        split_store(_mm512_mullo_epi16(lo4, _mm512_set1_epi16(sc[2 * c])), out_lo + c * 1024, out_hi + c * 1024);
        split_store(_mm512_mullo_epi16(hi4, _mm512_set1_epi16(sc[2 * c + 1])), out_lo + c * 1024 + 32,
                    out_hi + c * 1024 + 32);
    }
    for (int j = 0; j < 8; ++j) mpair[j] = (int32_t)((uint32_t)sc[8 + j] | ((uint32_t)sc[8 + j] << 16));
    *d = canon_f16_to_f32(blk.d);
    *dmin = canon_f16_to_f32(blk.dmin);
}

// Q6_K: chunk c = values 64c..64c+63 = half h = c / 2, groups s = 2(c & 1) and s + 1; value
// 128h + 32s + l = ((ql[64h + 32(s & 1) + l] >> 4(s >> 1)) & 15) | (((qh[32h + l] >> 2s) & 3) << 4).
inline void a_row_q6k(const block_q6_K& blk, uint8_t* out_lo, uint8_t* out_hi, int32_t* scpair, float* d) {
    for (int c = 0; c < 4; ++c) {
        const int h = c >> 1;
        const __m512i qh16 = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i*)(blk.qh + 32 * h)));
        for (int half = 0; half < 2; ++half) {
            const int s = 2 * (c & 1) + half;
            const __m512i ql16 =
                _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i*)(blk.ql + 64 * h + 32 * half)));
            const __m512i lo4 = _mm512_and_si512(_mm512_srl_epi16(ql16, _mm_cvtsi32_si128(4 * (s >> 1))),
                                                 _mm512_set1_epi16(15));
            const __m512i hi2 =
                _mm512_and_si512(_mm512_srl_epi16(qh16, _mm_cvtsi32_si128(2 * s)), _mm512_set1_epi16(3));
            const __m512i q = _mm512_or_si512(lo4, _mm512_slli_epi16(hi2, 4));  // stored value 0..63
            const int k0 = 4 * c + 2 * half;                                      // scale of l < 16
            const __m512i scv = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(blk.scales[k0]),
                                                        _mm512_set1_epi16(blk.scales[k0 + 1]));
            split_store(_mm512_mullo_epi16(q, scv), out_lo + c * 1024 + 32 * half, out_hi + c * 1024 + 32 * half);
        }
    }
    for (int i = 0; i < 8; ++i)
        scpair[i] = (int32_t)((uint32_t)(uint16_t)(int16_t)(32 * blk.scales[2 * i]) |
                              ((uint32_t)(uint16_t)(int16_t)(32 * blk.scales[2 * i + 1]) << 16));
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

template <bool Q6>
void tiles_dot(const uint8_t* w, size_t row_bytes, int64_t n_rows, const uint8_t* acts, int n_tok, int64_t nb,
               float* out, int64_t out_stride) {
    Scratch& sc = t_scratch;
    const int ntt = (n_tok + 15) / 16;
    if (!sc.ensure((size_t)ntt)) std::abort();  // tiny allocations; the caller checked the sizes
    load_tile_config();
    uint8_t* const a_lo = sc.a;
    uint8_t* const a_hi = sc.a + 4 * 16 * 64;
    int32_t* const c_lo = sc.c;
    int32_t* const c_hi = sc.c + 256;
    const size_t blk_bytes = Q6 ? sizeof(block_q6_K) : sizeof(block_q4_K);
    int32_t pairs[16][8];
    float dw[16], dm[16];
    const __m512 zero = _mm512_setzero_ps(), sign = _mm512_set1_ps(-0.0f);
    for (int64_t r0 = 0; r0 < n_rows; r0 += 16) {
        const int mr = n_rows - r0 < 16 ? (int)(n_rows - r0) : 16;
        for (int64_t b = 0; b < nb; ++b) {
            for (int r = 0; r < mr; ++r) {
                const uint8_t* blk = w + (size_t)(r0 + r) * row_bytes + (size_t)b * blk_bytes;
                if (Q6)
                    a_row_q6k(*reinterpret_cast<const block_q6_K*>(blk), a_lo + 64 * r, a_hi + 64 * r, pairs[r], &dw[r]);
                else
                    a_row_q4k(*reinterpret_cast<const block_q4_K*>(blk), a_lo + 64 * r, a_hi + 64 * r, pairs[r], &dw[r],
                              &dm[r]);
            }
            for (int tt = 0; tt < ntt; ++tt) {
                const uint8_t* item = acts + ((size_t)tt * (size_t)nb + (size_t)b) * kQ8kTileItemBytes;
                _tile_zero(0);
                _tile_zero(1);
                for (int c = 0; c < 4; ++c) {
                    _tile_loadd(4, a_lo + c * 1024, 64);
                    _tile_loadd(5, a_hi + c * 1024, 64);
                    _tile_loadd(6, item + c * 1024, 64);
                    _tile_dpbusd(0, 4, 6);
                    if (Q6)
                        _tile_dpbssd(1, 5, 6);
                    else
                        _tile_dpbusd(1, 5, 6);
                }
                _tile_stored(0, c_lo, 64);
                _tile_stored(1, c_hi, 64);
                const __m512 da = _mm512_loadu_ps(reinterpret_cast<const float*>(item + kQ8kTileDaOffset));
                const int32_t* bs = reinterpret_cast<const int32_t*>(item + kQ8kTileBsOffset);
                float* p = sc.p + (size_t)tt * 16 * 32 * 16;
                for (int r = 0; r < mr; ++r) {
                    __m512i isum = _mm512_add_epi32(_mm512_load_si512(c_lo + 16 * r),
                                                    _mm512_slli_epi32(_mm512_load_si512(c_hi + 16 * r), 7));
                    __m512i bsum = _mm512_setzero_si512();
                    for (int j = 0; j < 8; ++j)
                        bsum = _mm512_dpwssd_epi32(bsum, _mm512_loadu_si512(bs + 16 * j), _mm512_set1_epi32(pairs[r][j]));
                    __m512 cb;
                    if (Q6) {
                        isum = _mm512_sub_epi32(isum, bsum);  // the -32 offsets (pairs hold 32 * sc)
                        cb = _mm512_mul_ps(_mm512_mul_ps(da, _mm512_set1_ps(dw[r])), _mm512_cvtepi32_ps(isum));
                    } else {  // canon_fma(da * d, isum, -((da * dmin) * msum))
                        const __m512 mterm = _mm512_mul_ps(_mm512_mul_ps(da, _mm512_set1_ps(dm[r])), _mm512_cvtepi32_ps(bsum));
                        cb = _mm512_fmadd_ps(_mm512_mul_ps(da, _mm512_set1_ps(dw[r])), _mm512_cvtepi32_ps(isum),
                                             _mm512_xor_ps(mterm, sign));
                    }
                    // nb <= 32: lane b holds one block, p = +0.0f + c_b
                    _mm512_store_ps(p + ((size_t)r * 32 + (size_t)b) * 16, _mm512_add_ps(zero, cb));
                }
            }
        }
        for (int tt = 0; tt < ntt; ++tt) {
            const float* p = sc.p + (size_t)tt * 16 * 32 * 16;
            const int nt = n_tok - 16 * tt < 16 ? n_tok - 16 * tt : 16;
            for (int r = 0; r < mr; ++r) {
                alignas(64) float y[16];
                _mm512_store_ps(y, tree32_tokens(p + (size_t)r * 32 * 16, (int)nb));
                for (int t = 0; t < nt; ++t) out[(int64_t)(16 * tt + t) * out_stride + r0 + r] = y[t];
            }
        }
    }
    _tile_release();
}

}  // namespace

void q8k_tiles_dot_amx(uint32_t type, const uint8_t* w, size_t row_bytes, int64_t n_rows, const uint8_t* acts,
                       int n_tok, int64_t nb, float* out, int64_t out_stride) {
    if (type == GGML_TYPE_Q6_K)
        tiles_dot<true>(w, row_bytes, n_rows, acts, n_tok, nb, out, out_stride);
    else
        tiles_dot<false>(w, row_bytes, n_rows, acts, n_tok, nb, out, out_stride);
}

}  // namespace qwen3moe
