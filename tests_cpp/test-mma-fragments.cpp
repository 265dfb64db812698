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

#include "cuda/matvec-mma.cuh"
#include "quant/blocks.h"

using namespace qwen3moe;
using namespace qwen3moe::cuda;

namespace {
uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
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
