// Catch2 tests of the index math of the tensor-core prefill matvec (cuda/matvec-mma.cuh), run on
// the CPU: the PTX fragment maps are bijections onto their tiles as documented, the value orders
// the kernel loads agree with the k positions of A and B, the word-wise Q4_K scale unpack equals
// k4_unpack_scales, and the streamed tree (canon_tree_push over bit-reversed lanes) gives the bits
// of canon_tree32.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <utility>
#include <vector>
#include <algorithm>

#include "cuda/matvec-mma.cuh"
#include "quant/blocks.h"
#include "quant/dot-canon.h"
#include "quant/ggml-types.h"
#include "quant/quant.h"
#include "float-bits.h"

using namespace qwen3moe;
using namespace qwen3moe::cuda;

namespace {
using test::bits;
}  // namespace

TEST_CASE("mma k32 fragments are bijections onto A 16x32, B 32x8, C 16x8", "[mma]") {
    std::set<std::pair<int, int>> a, b, c;
    for (int lane = 0; lane < 32; ++lane) {
        for (int r = 0; r < 4; ++r)
            for (int e = 0; e < 4; ++e) {
                const int row = mma_k32_a_row(lane, r), k = mma_k32_a_k(lane, r, e);
                REQUIRE(row >= 0);
                REQUIRE(row < 16);
                REQUIRE(k >= 0);
                REQUIRE(k < 32);
                a.insert({row, k});
            }
        for (int r = 0; r < 2; ++r)
            for (int e = 0; e < 4; ++e) {
                const int k = mma_k32_b_k(lane, r, e);
                REQUIRE(k >= 0);
                REQUIRE(k < 32);
                b.insert({k, mma_b_col(lane)});
            }
        for (int r = 0; r < 4; ++r) {
            REQUIRE(mma_c_row(lane, r) < 16);
            REQUIRE(mma_c_col(lane, r) < 8);
            c.insert({mma_c_row(lane, r), mma_c_col(lane, r)});
        }
    }
    CHECK(a.size() == 16 * 32);
    CHECK(b.size() == 32 * 8);
    CHECK(c.size() == 16 * 8);
    // PTX: register 0 of lane 0 is row 0, k 0..3; register 2 of lane 5 is row 1, k 20..23.
    CHECK(mma_k32_a_row(0, 0) == 0);
    CHECK(mma_k32_a_k(5, 2, 0) == 20);
    CHECK(mma_k32_a_row(5, 2) == 1);
    CHECK(mma_k32_a_row(5, 3) == 9);
    CHECK(mma_k32_b_k(6, 1, 3) == 27);
    CHECK(mma_c_col(7, 1) == 7);
    CHECK(mma_c_row(31, 3) == 15);
}

TEST_CASE("mma k16 fragments are bijections onto A 16x16, B 16x8", "[mma]") {
    std::set<std::pair<int, int>> a, b;
    for (int lane = 0; lane < 32; ++lane)
        for (int e = 0; e < 4; ++e) {
            for (int r = 0; r < 2; ++r) a.insert({mma_k16_a_row(lane, r), mma_k16_k(lane, e)});
            b.insert({mma_k16_k(lane, e), mma_b_col(lane)});
        }
    CHECK(a.size() == 16 * 16);
    CHECK(b.size() == 16 * 8);
    for (auto [row, k] : a) {
        CHECK(row < 16);
        CHECK(k < 16);
    }
}

TEST_CASE("mma value orders: A and B of a lane hold the same values at each k", "[mma]") {
    std::set<int> packed;
    for (int k = 0; k < 32; ++k) packed.insert(mma_packed_value(k));
    CHECK(packed.size() == 32);
    CHECK(*packed.begin() == 0);
    CHECK(*packed.rbegin() == 31);
    for (int lane = 0; lane < 32; ++lane)
        for (int e = 0; e < 4; ++e) {
            for (int r = 0; r < 4; ++r) {  // A register r: half r >> 1
                CHECK(mma_packed_first(lane, r >> 1) + e == mma_packed_value(mma_k32_a_k(lane, r, e)));
                CHECK(mma_natural_first(lane, r >> 1) + e == mma_k32_a_k(lane, r, e));
            }
            for (int r = 0; r < 2; ++r) {  // B register r: half r
                CHECK(mma_packed_first(lane, r) + e == mma_packed_value(mma_k32_b_k(lane, r, e)));
                CHECK(mma_natural_first(lane, r) + e == mma_k32_b_k(lane, r, e));
            }
        }
    // A lane's packed values are 8 contiguous bytes (one 8-byte load per row and sub-block).
    for (int lane = 0; lane < 32; ++lane) CHECK(mma_packed_first(lane, 1) == mma_packed_first(lane, 0) + 4);
}

TEST_CASE("k4_unpack_scale_words equals k4_unpack_scales", "[mma]") {
    std::mt19937 rng(123);
    for (int it = 0; it < 2000; ++it) {
        uint8_t s[12];
        for (auto& v : s) v = (uint8_t)(rng() & 0xff);
        uint32_t w[3];
        std::memcpy(w, s, 12);
        uint32_t want[4], got[4];
        k4_unpack_scales(s, want);
        k4_unpack_scale_words(w[0], w[1], w[2], got);
        for (int i = 0; i < 4; ++i) REQUIRE(got[i] == want[i]);
        for (int j = 0; j < 8; ++j) {  // and byte j of the words is k4_scale_min's value
            uint8_t sc, m;
            k4_scale_min(j, s, &sc, &m);
            REQUIRE(((got[j >> 2] >> (8 * (j & 3))) & 0xff) == sc);
            REQUIRE(((got[2 + (j >> 2)] >> (8 * (j & 3))) & 0xff) == m);
        }
    }
}

TEST_CASE("canon_tree_push over bit-reversed lanes gives canon_tree32 bit for bit", "[mma]") {
    std::set<int> lanes;
    for (int i = 0; i < 32; ++i) lanes.insert(canon_leaf_lane(i));
    CHECK(lanes.size() == 32);
    CHECK(canon_leaf_lane(1) == 16);
    CHECK(canon_leaf_lane(2) == 8);
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::uniform_real_distribution<float> ue(-30.0f, 30.0f);
    for (int it = 0; it < 5000; ++it) {
        float p[32];
        const int n_used = 1 + (int)(rng() % 32);  // lanes past the row's blocks stay +0.0f
        for (int l = 0; l < 32; ++l) p[l] = l < n_used ? nd(rng) * std::exp2(ue(rng) / 4.0f) : 0.0f;
        if (it % 7 == 0) p[rng() % 32] = -p[rng() % 32];  // exact cancellations
        if (it % 11 == 0) p[rng() % 32] = std::numeric_limits<float>::max();
        float q[32];
        std::memcpy(q, p, sizeof p);
        const float want = canon_tree32(q);
        float stk[5] = {};
        float got = 0.0f;
        for (int i = 0; i < 32; ++i) got = canon_tree_push(stk, i, p[canon_leaf_lane(i)]);
        if (std::isnan(want)) {
            REQUIRE(std::isnan(got));
        } else {
            REQUIRE(bits(got) == bits(want));
        }
    }
}

// ---- host emulation of the kernel's tile arithmetic -------------------------------------------
// Builds every lane's A/B registers with the kernel's decoders (matvec-mma.cuh), scatters them into
// the tiles through the PTX fragment maps, multiplies, reads the products back through the C map,
// combines them as matvec-mma.cu does (scales, msum from the bsums, canon_block_*, lanes in bit-reversed
// order through canon_tree_push) and compares with vec_dot_q8k bit for bit. This checks the
// decoders, the A/B value orders and the combination on the CPU; the PTX maps themselves are the
// documented ones (checked for shape above).
namespace {

int8_t byte_at(uint32_t v, int e) { return (int8_t)(uint8_t)(v >> (8 * e)); }

// D[16][8] = A x B for k32 (kk = 32) or k16 (kk = 16) from the lanes' registers; a_unsigned: A
// bytes are .u8 (0..255), as the wide kernel's Q6_K k16 (mma_k16_u8), else .s8.
void emulate_mma(int kk, const uint32_t (&ar)[32][4], const uint32_t (&br)[32][2], int32_t (&d)[16][8],
                 bool a_unsigned = false) {
    int32_t a[16][32] = {};
    int8_t b[32][8] = {};
    auto abyte = [&](uint32_t v, int e) { return a_unsigned ? (int32_t)((v >> (8 * e)) & 0xffu) : (int32_t)byte_at(v, e); };
    for (int lane = 0; lane < 32; ++lane)
        for (int e = 0; e < 4; ++e) {
            if (kk == 32) {
                for (int r = 0; r < 4; ++r) a[mma_k32_a_row(lane, r)][mma_k32_a_k(lane, r, e)] = abyte(ar[lane][r], e);
                for (int r = 0; r < 2; ++r) b[mma_k32_b_k(lane, r, e)][mma_b_col(lane)] = byte_at(br[lane][r], e);
            } else {
                for (int r = 0; r < 2; ++r) a[mma_k16_a_row(lane, r)][mma_k16_k(lane, e)] = abyte(ar[lane][r], e);
                b[mma_k16_k(lane, e)][mma_b_col(lane)] = byte_at(br[lane][0], e);
            }
        }
    for (int i = 0; i < 16; ++i)
        for (int n = 0; n < 8; ++n) {
            int32_t s = 0;
            for (int k = 0; k < kk; ++k) s += (int32_t)a[i][k] * (int32_t)b[k][n];
            d[i][n] = s;
        }
}

uint32_t block_bytes(uint32_t type) {
    switch (type) {
        case GGML_TYPE_Q4_K: return sizeof(block_q4_K);
        case GGML_TYPE_Q5_K: return sizeof(block_q5_K);
        case GGML_TYPE_Q6_K: return sizeof(block_q6_K);
        case GGML_TYPE_Q8_0: return 8 * sizeof(block_q8_0);
        default: return 8 * sizeof(block_q4_0);
    }
}

float f16_at(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return canon_f16_to_f32(h);
}

// c_b of the 16 x 8 tile (rows w16[i], activation blocks a8[n]) as the kernel computes it.
// natural: the wide kernel's decoders (matvec-mma-wide.cu: natural order, bsum pair).
void tile_block_contrib(uint32_t type, const uint8_t* const (&w16)[16], const block_q8k* const (&a8)[8],
                        float (&c)[16][8], bool natural = false) {
    uint32_t ar[32][4], br[32][2];
    int32_t d[16][8];
    if (type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K) {
        int32_t isum[16][8] = {}, msum[16][8] = {};
        for (int j = 0; j < 8; ++j) {
            for (int lane = 0; lane < 32; ++lane) {
                const int t = lane & 3;
                for (int r = 0; r < 4; ++r) {
                    const uint8_t* w = w16[mma_k32_a_row(lane, r)];
                    if (natural)
                        ar[lane][r] = type == GGML_TYPE_Q4_K ? mma_a_q4k_nat(w, t, j, r >> 1) : mma_a_q5k_nat(w, t, j, r >> 1);
                    else
                        ar[lane][r] = type == GGML_TYPE_Q4_K ? mma_a_q4k(w, t, j, r >> 1) : mma_a_q5k(w, t, j, r >> 1);
                }
                for (int r = 0; r < 2; ++r)
                    br[lane][r] = natural ? mma_b_natural(a8[mma_b_col(lane)], t, j, r) : mma_b_packed(a8[mma_b_col(lane)], t, j, r);
            }
            emulate_mma(32, ar, br, d);
            for (int i = 0; i < 16; ++i) {
                uint32_t s[4];
                k4_unpack_scale_words(mma_ld4(w16[i] + 4), mma_ld4(w16[i] + 8), mma_ld4(w16[i] + 12), s);
                const int sc = (int)((s[j >> 2] >> (8 * (j & 3))) & 0xffu);
                for (int n = 0; n < 8; ++n) isum[i][n] += sc * d[i][n];
            }
        }
        // msum: one k16 pair over the bsums, D_lo + 128 D_hi (as the kernel).
        {
            uint32_t mr[32][4] = {}, bl[32][2] = {}, bh[32][2] = {};
            for (int lane = 0; lane < 32; ++lane) {
                const int t = lane & 3;
                for (int r = 0; r < 2; ++r) {
                    const uint8_t* w = w16[mma_k16_a_row(lane, r)];
                    uint32_t s[4];
                    k4_unpack_scale_words(mma_ld4(w + 4), mma_ld4(w + 8), mma_ld4(w + 12), s);
                    mr[lane][r] = mma_a_mins_k16(s, t);
                }
                bl[lane][0] = mma_b_bsum_k16(a8[mma_b_col(lane)], t, 0);
                bh[lane][0] = mma_b_bsum_k16(a8[mma_b_col(lane)], t, 1);
                if (natural) {
                    uint32_t lo, hi;
                    mma_b_bsum_k16_pair(a8[mma_b_col(lane)], t, lo, hi);
                    REQUIRE(lo == bl[lane][0]);
                    REQUIRE(hi == bh[lane][0]);
                    bl[lane][0] = lo;
                    bh[lane][0] = hi;
                }
            }
            int32_t dl[16][8], dh[16][8];
            emulate_mma(16, mr, bl, dl);
            emulate_mma(16, mr, bh, dh);
            for (int i = 0; i < 16; ++i)
                for (int n = 0; n < 8; ++n) msum[i][n] = dl[i][n] + 128 * dh[i][n];
        }
        for (int i = 0; i < 16; ++i)
            for (int n = 0; n < 8; ++n)
                c[i][n] = canon_block_q4k(a8[n]->d, f16_at(w16[i]), f16_at(w16[i] + 2), isum[i][n], msum[i][n]);
    } else if (type == GGML_TYPE_Q6_K) {
        int32_t isum[16][8] = {};
        for (int j = 0; j < 16; ++j) {
            for (int lane = 0; lane < 32; ++lane) {
                for (int r = 0; r < 2; ++r)
                    ar[lane][r] = natural ? mma_a_q6k_u(w16[mma_k16_a_row(lane, r)], lane & 3, j)
                                          : mma_a_q6k(w16[mma_k16_a_row(lane, r)], lane & 3, j);
                br[lane][0] = mma_b_k16(a8[mma_b_col(lane)], lane & 3, j);
            }
            emulate_mma(16, ar, br, d, natural);
            for (int i = 0; i < 16; ++i)
                for (int n = 0; n < 8; ++n) isum[i][n] += (int)(int8_t)w16[i][192 + j] * d[i][n];
        }
        if (natural) {  // the wide kernel's - 32 sum_j sc_j bs_j: one k16 pair over the bsums
            uint32_t sr[32][4] = {}, bl[32][2] = {}, bh[32][2] = {};
            for (int lane = 0; lane < 32; ++lane) {
                for (int r = 0; r < 2; ++r) sr[lane][r] = mma_ld4_a2(w16[mma_k16_a_row(lane, r)] + 192 + mma_k16_k(lane, 0));
                mma_b_bsum16_k16_pair(a8[mma_b_col(lane)], lane & 3, bl[lane][0], bh[lane][0]);
            }
            int32_t dl[16][8], dh[16][8];
            emulate_mma(16, sr, bl, dl);
            emulate_mma(16, sr, bh, dh);
            for (int i = 0; i < 16; ++i)
                for (int n = 0; n < 8; ++n) isum[i][n] -= 32 * (dl[i][n] + 128 * dh[i][n]);
        }
        for (int i = 0; i < 16; ++i)
            for (int n = 0; n < 8; ++n) c[i][n] = canon_block_q6k(a8[n]->d, f16_at(w16[i] + 208), isum[i][n]);
    } else {
        const bool q8 = type == GGML_TYPE_Q8_0;
        const int wbk = q8 ? (int)sizeof(block_q8_0) : (int)sizeof(block_q4_0);
        float inner[16][8] = {};
        for (int k = 0; k < 8; ++k) {
            for (int lane = 0; lane < 32; ++lane) {
                const int t = lane & 3;
                for (int r = 0; r < 4; ++r) {
                    const uint8_t* w = w16[mma_k32_a_row(lane, r)];
                    ar[lane][r] = q8 ? (natural ? mma_a_q8_0_nat(w, t, k, r >> 1) : mma_a_q8_0(w, t, k, r >> 1))
                                     : mma_a_q4_0(w, t, k, r >> 1);
                }
                for (int r = 0; r < 2; ++r) {
                    const block_q8k* ab = a8[mma_b_col(lane)];
                    br[lane][r] = q8 && !natural ? mma_b_packed(ab, t, k, r) : mma_b_natural(ab, t, k, r);
                }
            }
            emulate_mma(32, ar, br, d);
            for (int i = 0; i < 16; ++i)
                for (int n = 0; n < 8; ++n) inner[i][n] = canon_fma(f16_at(w16[i] + wbk * k), (float)d[i][n], inner[i][n]);
        }
        for (int i = 0; i < 16; ++i)
            for (int n = 0; n < 8; ++n) c[i][n] = a8[n]->d * inner[i][n];
    }
}

// Random weight rows with sane f16 scales (every bit pattern of the quantised values).
std::vector<uint8_t> random_rows(uint32_t type, int n_rows, int nb, std::mt19937& rng) {
    const uint32_t bb = block_bytes(type);
    std::vector<uint8_t> w((size_t)n_rows * nb * bb);
    for (auto& v : w) v = (uint8_t)(rng() & 0xff);
    std::uniform_real_distribution<float> us(1e-4f, 2e-2f);
    auto put = [&](uint8_t* p) {
        const uint16_t h = canon_f32_to_f16((rng() & 1) ? us(rng) : -us(rng));
        std::memcpy(p, &h, 2);
    };
    for (int64_t blk = 0; blk < (int64_t)n_rows * nb; ++blk) {
        uint8_t* p = w.data() + blk * bb;
        if (type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K) {
            put(p);
            put(p + 2);
        } else if (type == GGML_TYPE_Q6_K) {
            put(p + 208);
        } else {
            const int sb = type == GGML_TYPE_Q8_0 ? (int)sizeof(block_q8_0) : (int)sizeof(block_q4_0);
            for (int k = 0; k < 8; ++k) put(p + sb * k);
        }
    }
    return w;
}

}  // namespace

TEST_CASE("host emulation of the mma tile arithmetic equals vec_dot_q8k bit for bit", "[mma]") {
    const uint32_t types[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0};
    std::mt19937 rng(2024);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (uint32_t type : types)
        for (int nb : {3, 34}) {  // 34 blocks: lanes 0 and 1 hold two blocks each
            const int n_rows = 21, n_tok = 11, n = 256 * nb;
            const uint32_t bb = block_bytes(type);
            const std::vector<uint8_t> w = random_rows(type, n_rows, nb, rng);
            std::vector<float> x((size_t)n_tok * n);
            for (auto& v : x) v = nd(rng) * ((rng() % 97) == 0 ? 40.0f : 1.0f);
            for (int i = 0; i < 256; ++i) x[(size_t)n + i] = 0.0f;  // a zero block (d = 0)
            for (int i = 0; i < 256; ++i) {  // saturated blocks: |bsums| at their extremes (bs_j = +-4064)
                x[(size_t)2 * n + 256 * (nb - 1) + i] = 3.0f;
                x[(size_t)3 * n + i] = -0.5f;
            }
            std::vector<block_q8k> a((size_t)n_tok * nb);
            for (int t = 0; t < n_tok; ++t) quantize_row_q8k(x.data() + (size_t)t * n, a.data() + (size_t)t * nb, n);
            for (int r0 = 0; r0 < n_rows; r0 += 16)
                for (int s0 = 0; s0 < n_tok; s0 += 8) {
                    float stk[16][8][5] = {}, res[16][8] = {};
                    for (int i = 0; i < 32; ++i) {  // leaves in the kernel's order
                        const int l = canon_leaf_lane(i);
                        float p[16][8] = {};
                        for (int b = l; b < nb; b += 32) {
                            const uint8_t* w16[16];
                            const block_q8k* a8[8];
                            for (int rr = 0; rr < 16; ++rr)  // rows past the end: the last row (dropped)
                                w16[rr] = w.data() + ((size_t)std::min(r0 + rr, n_rows - 1) * nb + b) * bb;
                            for (int ss = 0; ss < 8; ++ss) a8[ss] = a.data() + (size_t)std::min(s0 + ss, n_tok - 1) * nb + b;
                            float c[16][8];
                            tile_block_contrib(type, w16, a8, c);
                            for (int rr = 0; rr < 16; ++rr)
                                for (int ss = 0; ss < 8; ++ss) p[rr][ss] = p[rr][ss] + c[rr][ss];
                        }
                        for (int rr = 0; rr < 16; ++rr)
                            for (int ss = 0; ss < 8; ++ss) res[rr][ss] = canon_tree_push(stk[rr][ss], i, p[rr][ss]);
                    }
                    for (int rr = 0; rr < 16 && r0 + rr < n_rows; ++rr)
                        for (int ss = 0; ss < 8 && s0 + ss < n_tok; ++ss) {
                            const float want = vec_dot_q8k(type, w.data() + (size_t)(r0 + rr) * nb * bb,
                                                           a.data() + (size_t)(s0 + ss) * nb, n);
                            INFO("type " << type << " nb " << nb << " row " << r0 + rr << " token " << s0 + ss);
                            REQUIRE(bits(res[rr][ss]) == bits(want));
                        }
                }
        }
}

// The wide kernel's row protocol (matvec-mma-wide.cu): leaves m of the depth-D tree in order
// (lane canon_leaf_lane_d(D, m)), a lane's blocks summed from +0.0f, pushed with
// canon_push_merges(m) merges (older + newer), +0.0f pushed for lanes without a block.
namespace {
struct WideRow {
    int d;
    float stk[5] = {};
    float res = 0.0f;
    void push(int m, float v) {
        const int k = canon_push_merges(m);
        for (int i = 0; i < k; ++i) v = stk[i] + v;
        if (k < d) stk[k] = v;
        if (m == (1 << d) - 1) res = v;
    }
};
// Calls leaf(m, lane) for each leaf in order and returns the pushed row value (c(b): block b's term).
template <class C> float wide_row(int64_t nb, C&& c) {
    WideRow row{canon_tree_depth(nb)};
    for (int m = 0; m < (1 << row.d); ++m) {
        const int l = canon_leaf_lane_d(row.d, m);
        float p = 0.0f;
        for (int64_t b = l; b < nb; b += 32) p = p + c(b);
        row.push(m, p);
    }
    return row.res;
}
}  // namespace

TEST_CASE("wide kernel tree: depth-D leaves with zero lanes give canon_tree32 bit for bit", "[mma]") {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int d = 1; d <= 5; ++d) {  // canon_leaf_lane_d is a bijection onto lanes 0 .. 2^d - 1
        std::set<int> lanes;
        for (int m = 0; m < (1 << d); ++m) lanes.insert(canon_leaf_lane_d(d, m));
        CHECK((int)lanes.size() == (1 << d));
        CHECK(*lanes.rbegin() == (1 << d) - 1);
    }
    CHECK(canon_push_merges(0) == 0);
    CHECK(canon_push_merges(7) == 3);
    CHECK(canon_push_merges(11) == 2);
    for (int64_t nb : {1, 2, 3, 5, 8, 9, 15, 16, 17, 20, 31, 32, 33, 40, 64, 70}) {
        CHECK(canon_tree_depth(nb) >= 3);
        if (nb <= 16) CHECK((1 << canon_tree_depth(nb)) >= nb);
        for (int trial = 0; trial < 200; ++trial) {
            std::vector<float> c((size_t)nb);
            for (auto& v : c) {
                const int kind = (int)(rng() % 16);
                v = kind == 0 ? -0.0f : kind == 1 ? 0.0f : kind == 2 ? -c[0] : nd(rng) * std::ldexp(1.0f, (int)(rng() % 40) - 20);
            }
            float p[32];
            canon_row_init(p);
            for (int64_t b = 0; b < nb; ++b) canon_row_add(p, b, c[(size_t)b]);
            const float want = canon_tree32(p);
            const float got = wide_row(nb, [&](int64_t b) { return c[(size_t)b]; });
            INFO("nb " << nb << " trial " << trial);
            REQUIRE(bits(got) == bits(want));
        }
    }
}

TEST_CASE("host emulation of the wide kernel (natural order, depth-D tree) equals vec_dot_q8k", "[mma]") {
    const uint32_t types[] = {GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0};
    std::mt19937 rng(99);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (uint32_t type : types)
        for (int nb : {1, 3, 8, 16, 20}) {
            const int n_rows = 16, n_tok = 8, n = 256 * nb;
            const uint32_t bb = block_bytes(type);
            const std::vector<uint8_t> w = random_rows(type, n_rows, nb, rng);
            std::vector<float> x((size_t)n_tok * n);
            for (auto& v : x) v = nd(rng) * ((rng() % 97) == 0 ? 40.0f : 1.0f);
            for (int i = 0; i < 256; ++i) x[(size_t)n + i] = 0.0f;
            for (int i = 0; i < 256; ++i) x[(size_t)2 * n + 256 * (nb - 1) + i] = 3.0f;
            std::vector<block_q8k> a((size_t)n_tok * nb);
            for (int t = 0; t < n_tok; ++t) quantize_row_q8k(x.data() + (size_t)t * n, a.data() + (size_t)t * nb, n);
            std::vector<std::vector<float>> cb((size_t)nb);  // c_b of the 16 x 8 tile, per block
            for (int b = 0; b < nb; ++b) {
                const uint8_t* w16[16];
                const block_q8k* a8[8];
                for (int rr = 0; rr < 16; ++rr) w16[rr] = w.data() + ((size_t)rr * nb + b) * bb;
                for (int ss = 0; ss < 8; ++ss) a8[ss] = a.data() + (size_t)ss * nb + b;
                float c[16][8];
                tile_block_contrib(type, w16, a8, c, true);
                cb[(size_t)b].assign(&c[0][0], &c[0][0] + 128);
            }
            for (int rr = 0; rr < 16; ++rr)
                for (int ss = 0; ss < 8; ++ss) {
                    const float got = wide_row(nb, [&](int64_t b) { return cb[(size_t)b][(size_t)(rr * 8 + ss)]; });
                    const float want = vec_dot_q8k(type, w.data() + (size_t)rr * nb * bb, a.data() + (size_t)ss * nb, n);
                    INFO("type " << type << " nb " << nb << " row " << rr << " token " << ss);
                    REQUIRE(bits(got) == bits(want));
                }
        }
}

TEST_CASE("staging windows cover the data run, keep the address mod 16 and read nothing past it", "[mma]") {
    for (uintptr_t base : {(uintptr_t)4096, (uintptr_t)4098, (uintptr_t)4100, (uintptr_t)4111})
        for (int n : {144, 176, 210, 272, 292}) {
            const uintptr_t wb = mma_window_base(base);
            REQUIRE(wb % 16 == 0);
            REQUIRE(wb + (uintptr_t)mma_window_off(base) == base);
            // Every byte of [base, base + n) is copied by exactly one chunk; no chunk goes past the end.
            std::vector<int> hit((size_t)n, 0);
            const int max_chunks = (n + 30) / 16;
            for (int c = 0; c < max_chunks + 2; ++c) {
                const int bytes = mma_window_chunk_bytes(base, n, c);
                if (bytes <= 0) continue;
                REQUIRE(c < max_chunks);
                REQUIRE(bytes <= 16);
                const uintptr_t lo = wb + 16 * (uintptr_t)c, hi = lo + (uintptr_t)bytes;
                REQUIRE(hi <= base + (uintptr_t)n);
                for (uintptr_t x = lo; x < hi; ++x)
                    if (x >= base) ++hit[(size_t)(x - base)];
            }
            for (int v : hit) REQUIRE(v == 1);
        }
}
