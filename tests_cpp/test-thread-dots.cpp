// Catch2 tests of the decode kernels' one-thread Q4_K block sums (cuda/thread-dots.cuh), run on
// the CPU: thread_q4k_sums gives the integers of the definition (dot-canon.h, from the unpacked
// scales and nibbles), and canon_block_q4k on them gives vec_dot_q8k's bits for a one-block row.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <vector>

#include "cuda/thread-dots.cuh"
#include "quant/blocks.h"
#include "quant/dot-canon.h"
#include "quant/ggml-types.h"
#include "quant/quant.h"
#include "float-bits.h"

using namespace qwen3moe;
using namespace qwen3moe::cuda;

namespace {
using test::bits;

// isum, msum straight from the definition: value i of sub-block j = i / 32 is nibble
// (i % 64 < 32 ? low : high) of qs[32 (i / 64) + i % 32].
void reference_sums(const block_q4_K& w, const block_q8k& a, int32_t* isum, int32_t* msum) {
    *isum = 0;
    *msum = 0;
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        k4_scale_min(j, w.scales, &sc, &m);
        int32_t dot = 0, asum = 0;
        for (int l = 0; l < 32; ++l) {
            const int i = 32 * j + l;
            const uint8_t byte = w.qs[32 * (i / 64) + i % 32];
            const int q = (i % 64 < 32) ? (byte & 15) : (byte >> 4);
            dot += q * a.qs[i];
            asum += a.qs[i];
        }
        *isum += sc * dot;
        *msum += m * asum;
    }
}
// isum of a Q6_K block from the definition: q6k_value (unsigned, +32) and scales[i / 16].
int32_t reference_q6k(const block_q6_K& w, const block_q8k& a) {
    int32_t isum = 0;
    for (int sb = 0; sb < 16; ++sb) {
        int32_t dot = 0;
        for (int l = 0; l < 16; ++l) dot += (q6k_value(&w, 16 * sb + l) - 32) * a.qs[16 * sb + l];
        isum += (int32_t)w.scales[sb] * dot;
    }
    return isum;
}

// A Q8K block of 256 activations: random, sometimes saturated (every qs at +-127, the bsums at
// their extremes) or all zero (d = 0).
block_q8k random_act(std::mt19937& rng, int trial) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(256);
    for (auto& v : x) v = nd(rng) * ((rng() % 31) == 0 ? 50.0f : 1.0f);
    if (trial % 5 == 0)
        for (int i = 0; i < 256; ++i) x[i] = (i / 16) % 2 ? -3.0f : 3.0f;
    if (trial % 13 == 0) std::fill(x.begin(), x.end(), 0.0f);
    block_q8k a;
    quantize_row_q8k(x.data(), &a, 256);
    return a;
}
}  // namespace

TEST_CASE("one-thread Q6_K sums equal the definition and give vec_dot_q8k's bits at both alignments", "[thread-dots]") {
    std::mt19937 rng(78);
    std::uniform_real_distribution<float> us(1e-4f, 2e-2f);
    // Two blocks back to back, as in a row: the second starts 210 bytes in (2 mod 4).
    alignas(16) uint8_t row[2 * sizeof(block_q6_K) + 16];
    for (int trial = 0; trial < 3000; ++trial) {
        for (auto& v : row) v = (uint8_t)(rng() & 0xff);
        for (int b = 0; b < 2; ++b) {
            block_q6_K w;
            std::memcpy(&w, row + b * sizeof(block_q6_K), sizeof(w));
            if (trial % 7 == 0) {  // every stored value 63 or 0, scales at -128 / 127
                std::memset(w.ql, trial % 14 ? 0xff : 0x00, sizeof(w.ql));
                std::memset(w.qh, trial % 14 ? 0xff : 0x00, sizeof(w.qh));
                std::memset(w.scales, trial % 3 ? 0x80 : 0x7f, sizeof(w.scales));
            }
            w.d = canon_f32_to_f16((rng() & 1) ? us(rng) : -us(rng));
            std::memcpy(row + b * sizeof(block_q6_K), &w, sizeof(w));
            const block_q8k a = random_act(rng, trial);
            const int32_t isum = thread_q6k_isum(row + b * sizeof(block_q6_K), &a);
            REQUIRE(isum == reference_q6k(w, a));
            const float c = canon_block_q6k(a.d, canon_f16_to_f32(w.d), isum);
            REQUIRE(bits(0.0f + c) == bits(vec_dot_q8k(GGML_TYPE_Q6_K, &w, &a, 256)));
        }
    }
}

TEST_CASE("one-thread Q4_K sums equal the definition and give vec_dot_q8k's bits", "[thread-dots]") {
    std::mt19937 rng(77);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::uniform_real_distribution<float> us(1e-4f, 2e-2f);
    // 16-byte aligned weight storage, as the staged shared memory the kernels read.
    alignas(16) block_q4_K w[1];
    static_assert(sizeof(block_q4_K) % 16 == 0, "blocks stay 16-byte aligned in a row");
    int checked = 0;
    for (int trial = 0; trial < 3000; ++trial) {
        uint8_t* p = reinterpret_cast<uint8_t*>(w);
        for (size_t i = 0; i < sizeof(block_q4_K); ++i) p[i] = (uint8_t)(rng() & 0xff);
        if (trial % 7 == 0) std::memset(w[0].qs, 0xff, sizeof(w[0].qs));          // every nibble 15
        if (trial % 11 == 0) std::memset(w[0].scales, 0xff, sizeof(w[0].scales));  // scales, mins 63
        w[0].d = canon_f32_to_f16((rng() & 1) ? us(rng) : -us(rng));
        w[0].dmin = canon_f32_to_f16((rng() & 1) ? us(rng) : -us(rng));
        std::vector<float> x(256);
        for (auto& v : x) v = nd(rng) * ((rng() % 31) == 0 ? 50.0f : 1.0f);
        if (trial % 5 == 0)  // saturated activations: every qs at +-127, the bsums at their extremes
            for (int i = 0; i < 256; ++i) x[i] = (i / 16) % 2 ? -3.0f : 3.0f;
        if (trial % 13 == 0) std::fill(x.begin(), x.end(), 0.0f);  // d = 0
        block_q8k a;
        quantize_row_q8k(x.data(), &a, 256);
        int32_t isum, msum, ri, rm;
        thread_q4k_sums(reinterpret_cast<const uint8_t*>(w), &a, &isum, &msum);
        reference_sums(w[0], a, &ri, &rm);
        REQUIRE(isum == ri);
        REQUIRE(msum == rm);
        const float c = canon_block_q4k(a.d, canon_f16_to_f32(w[0].d), canon_f16_to_f32(w[0].dmin), isum, msum);
        // A one-block row is +0.0f + c_0 followed by additions of +0.0f (dot-canon.h's row rule).
        REQUIRE(bits(0.0f + c) == bits(vec_dot_q8k(GGML_TYPE_Q4_K, w, &a, 256)));
        ++checked;
    }
    REQUIRE(checked == 3000);
}
