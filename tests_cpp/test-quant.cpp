// Catch2 tests of the quant area: block layouts, scalar vs SIMD bit identity of every Q8K dot
// (single and multi-token), canon_dot twins, Q8K quantiser edge cases, quantiser round trips and
// error reporting. The gguf-py oracle checks live in tests_py/test_quant.py.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "quant/dot-canon.h"
#include "quant/quant.h"
#include "runtime/cpu-tuning.h"
#include "runtime/errors.h"

using namespace qwen3moe;

namespace {

const uint32_t kDotTypes[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};

std::vector<std::string> levels() {
    std::vector<std::string> out;
    for (const char* l : {"scalar", "avx2", "avx512vnni"})
        if (simd_level_available(l)) out.push_back(l);
    return out;
}

struct RestoreLevel {
    ~RestoreLevel() { set_simd_level("auto"); }
};

uint32_t bits_of(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// Same bits, any NaN equal to any NaN (NaN sign/payload is unspecified).
bool same(float a, float b) { return (std::isnan(a) && std::isnan(b)) || bits_of(a) == bits_of(b); }

int64_t row_bytes(uint32_t type, int64_t n) {
    const GGMLTypeTraits* t = ggml_type_traits(type);
    return n / t->block_size * t->type_size;
}

// Random weight blocks: random bytes, f16 scale fields set to finite values of scale ~ `mag`.
std::vector<uint8_t> random_weights(std::mt19937& rng, uint32_t type, int64_t n_values, float mag) {
    const GGMLTypeTraits* t = ggml_type_traits(type);
    const int64_t nblk = n_values / t->block_size;
    std::vector<uint8_t> w((size_t)(nblk * t->type_size));
    for (auto& b : w) b = (uint8_t)(rng() >> 24);
    std::normal_distribution<float> N(0.0f, mag);
    for (int64_t b = 0; b < nblk; ++b) {
        uint8_t* blk = w.data() + b * t->type_size;
        std::vector<int> offs;
        if (type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q8_0) offs = {0};
        if (type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K) offs = {0, 2};
        if (type == GGML_TYPE_Q6_K) offs = {208};
        for (int off : offs) {
            const uint16_t h = canon_f32_to_f16(N(rng));
            std::memcpy(blk + off, &h, 2);
        }
    }
    return w;
}

std::vector<float> random_floats(std::mt19937& rng, int64_t n, float heavy) {
    std::normal_distribution<float> N(0.0f, 1.0f);
    std::vector<float> x((size_t)n);
    for (auto& v : x) v = N(rng) * std::exp(heavy * N(rng));
    return x;
}

}  // namespace

TEST_CASE("block layouts match GGUF", "[quant]") {
    CHECK(sizeof(block_q4_0) == 18);
    CHECK(sizeof(block_q8_0) == 34);
    CHECK(sizeof(block_q4_K) == 144);
    CHECK(sizeof(block_q5_K) == 176);
    CHECK(sizeof(block_q6_K) == 210);
    CHECK(sizeof(block_q8k) == 292);
    CHECK(offsetof(block_q6_K, d) == 208);
    CHECK(offsetof(block_q5_K, qs) == 48);
    CHECK(offsetof(block_q8k, bsums) == 260);
    for (uint32_t t : {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q8_K}) {
        const GGMLTypeTraits* tr = ggml_type_traits(t);
        REQUIRE(tr != nullptr);
        const size_t sz = t == GGML_TYPE_Q4_0 ? sizeof(block_q4_0)
                          : t == GGML_TYPE_Q8_0 ? sizeof(block_q8_0)
                          : t == GGML_TYPE_Q4_K ? sizeof(block_q4_K)
                          : t == GGML_TYPE_Q5_K ? sizeof(block_q5_K)
                          : t == GGML_TYPE_Q6_K ? sizeof(block_q6_K)
                                                : sizeof(block_q8k);
        CHECK((size_t)tr->type_size == sz);
    }
}

TEST_CASE("K-quant scale unpacking: word form equals the per-j form", "[quant]") {
    std::mt19937 rng(1);
    for (int it = 0; it < 2000; ++it) {
        uint8_t s[12];
        for (auto& b : s) b = (uint8_t)(rng() >> 24);
        uint32_t u[4];
        k4_unpack_scales(s, u);
        uint8_t packed[16];
        std::memcpy(packed, u, 16);
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, m;
            k4_scale_min(j, s, &sc, &m);
            REQUIRE(packed[j] == sc);
            REQUIRE(packed[8 + j] == m);
            REQUIRE(sc < 64);
            REQUIRE(m < 64);
        }
    }
}

TEST_CASE("Q8K quantiser edge cases", "[quant]") {
    RestoreLevel restore;
    for (const std::string& lv : levels()) {
        set_simd_level(lv.c_str());
        INFO("level " << lv);
        std::vector<float> x(256 * 5, 0.0f);
        // block 1: one huge value among small ones
        for (int i = 0; i < 256; ++i) x[256 + i] = 1e-3f * (float)(i % 7);
        x[256 + 40] = 1e30f;
        // block 2: negatives only, the largest magnitude -5
        for (int i = 0; i < 256; ++i) x[512 + i] = -5.0f * (float)(i + 1) / 256.0f;
        // block 3: exact ties at iscale == 1 (amax 127)
        for (int i = 0; i < 256; ++i) x[768 + i] = (float)(i % 100) + 0.5f;
        x[768] = 127.0f;
        // block 4: NaN and inf-free mixture with a NaN
        for (int i = 0; i < 256; ++i) x[1024 + i] = (float)(i - 128);
        x[1024 + 5] = NAN;
        std::vector<block_q8k> y(5);
        quantize_row_q8k(x.data(), y.data(), (int64_t)x.size());

        CHECK(y[0].d == 0.0f);
        for (int i = 0; i < 256; ++i) CHECK(y[0].qs[i] == 0);
        for (int k = 0; k < 16; ++k) CHECK(y[0].bsums[k] == 0);

        CHECK(y[1].d == 1e30f / 127.0f);
        CHECK(y[1].qs[40] == 127);
        for (int i = 0; i < 256; ++i)
            if (i != 40) CHECK(y[1].qs[i] == 0);

        CHECK(y[2].d == 5.0f / 127.0f);
        CHECK(y[2].qs[255] == -127);
        for (int i = 0; i < 256; ++i) CHECK(y[2].qs[i] <= 0);

        CHECK(y[3].d == 1.0f);
        CHECK(y[3].qs[0] == 127);
        CHECK(y[3].qs[1] == 2);    // 1.5 -> 2
        CHECK(y[3].qs[2] == 2);    // 2.5 -> 2 (half to even)
        CHECK(y[3].qs[3] == 4);    // 3.5 -> 4
        CHECK(y[3].qs[100] == 0);  // 0.5 -> 0

        CHECK(y[4].qs[5] == 0);  // NaN -> 0
        CHECK(y[4].d == 128.0f / 127.0f);
        CHECK(y[4].qs[0] == -127);

        for (const block_q8k& b : y)
            for (int k = 0; k < 16; ++k) {
                int s = 0;
                for (int i = 0; i < 16; ++i) s += b.qs[16 * k + i];
                CHECK(b.bsums[k] == s);
            }
    }
    std::vector<block_q8k> y(1);
    std::vector<float> x(100, 1.0f);
    CHECK_THROWS_AS(quantize_row_q8k(x.data(), y.data(), 100), std::invalid_argument);
}

TEST_CASE("Q8K quantiser: every SIMD level equals the scalar definition", "[quant]") {
    RestoreLevel restore;
    std::mt19937 rng(2);
    const int64_t n = 256 * 64;
    std::vector<float> x = random_floats(rng, n, 2.0f);
    for (int i = 0; i < 256; ++i) x[i] = (float)((i % 9) - 4) * 0.25f;  // many exact ties
    std::vector<block_q8k> ref(n / 256), got(n / 256);
    set_simd_level("scalar");
    quantize_row_q8k(x.data(), ref.data(), n);
    for (const std::string& lv : levels()) {
        set_simd_level(lv.c_str());
        quantize_row_q8k(x.data(), got.data(), n);
        CHECK(std::memcmp(ref.data(), got.data(), ref.size() * sizeof(block_q8k)) == 0);
    }
}

TEST_CASE("Q8K dots: every SIMD level and the multi-token path give the scalar bits", "[quant]") {
    RestoreLevel restore;
    std::mt19937 rng(3);
    for (uint32_t type : kDotTypes) {
        for (int64_t n : {256, 2048, 256 * 37}) {
            INFO("type " << ggml_type_name(type) << " n " << n);
            const int rows = n > 2048 ? 4 : 16;
          // token counts: the 8-lane kernel's full and partial groups, the few-token kernel's
          // chunking (cpu tuning few_tokens: chunks of <= 8 tokens), with both settings
          for (int few : {0, 1}) {
          cpu_tuning_set("few_tokens", few);
          for (int n_tok : {2, 3, 8, 11, 17}) {
            INFO("few_tokens " << few << " n_tok " << n_tok);
            std::vector<uint8_t> w = random_weights(rng, type, rows * n, 0.02f);
            std::vector<uint8_t> wx = random_weights(rng, type, rows * n, 300.0f);  // large scales
            std::vector<float> x = random_floats(rng, n * n_tok, 2.5f);
            for (int i = 0; i < 256; ++i) x[i] = 0.0f;  // an all-zero activation block
            std::vector<block_q8k> a((size_t)(n_tok * n / 256));
            quantize_row_q8k(x.data(), a.data(), n * n_tok);
            const int64_t rb = row_bytes(type, n);
            for (const std::vector<uint8_t>* wp : {&w, &wx}) {
                std::vector<float> ref((size_t)(rows * n_tok));
                set_simd_level("scalar");
                for (int r = 0; r < rows; ++r)
                    for (int t = 0; t < n_tok; ++t)
                        ref[(size_t)(t * rows + r)] = vec_dot_q8k(type, wp->data() + r * rb, a.data() + t * (n / 256), n);
                int finite = 0;
                for (float v : ref) finite += std::isfinite(v) ? 1 : 0;
                CHECK(finite > (int)ref.size() / 2);
                for (const std::string& lv : levels()) {
                    set_simd_level(lv.c_str());
                    INFO("level " << lv);
                    std::vector<float> multi((size_t)(rows * n_tok));
                    for (int r = 0; r < rows; ++r) {
                        vec_dot_q8k_multi(type, wp->data() + r * rb, a.data(), n / 256, n_tok, n, multi.data() + r, rows);
                        for (int t = 0; t < n_tok; ++t) {
                            const float single = vec_dot_q8k(type, wp->data() + r * rb, a.data() + t * (n / 256), n);
                            REQUIRE(same(single, ref[(size_t)(t * rows + r)]));
                            REQUIRE(same(multi[(size_t)(t * rows + r)], single));
                        }
                    }
                }
            }
          }
          }
        }
    }
    cpu_tuning_set("few_tokens", 1);
}

TEST_CASE("Q8K dots: short rows and every token count 1..17 give the scalar bits", "[quant]") {
    // The AVX-512 short-row kernel (nb <= 16 blocks: (token, block) pairs packed 8 to a vector,
    // chunks of 64 / nb tokens, 8 for nb > 8) and the few-token chunks: nb = 1, 3, 8, 9, 16
    // (short) and 17 (not),
    // token counts that are and are not multiples of 8 or of the chunk, 5 rows; a row whose
    // blocks are all zero (every lane -0/+0 handling) and an all-zero activation block.
    RestoreLevel restore;
    std::mt19937 rng(11);
    for (uint32_t type : {(uint32_t)GGML_TYPE_Q4_K, (uint32_t)GGML_TYPE_Q5_K, (uint32_t)GGML_TYPE_Q6_K}) {
        for (int64_t nb : {1, 3, 8, 9, 16, 17}) {
            const int64_t n = 256 * nb;
            const int rows = 5;
            const int max_tok = 23;  // nb = 3: chunks of 21 tokens; 22, 23 cross one
            std::vector<uint8_t> w = random_weights(rng, type, rows * n, 0.02f);
            const int64_t rb = (int64_t)w.size() / rows;
            std::memset(w.data() + 2 * rb, 0, (size_t)rb);  // row 2: all-zero blocks
            std::vector<float> x = random_floats(rng, n * max_tok, 2.5f);
            for (int i = 0; i < 256; ++i) x[(size_t)(n + i)] = 0.0f;  // token 1, block 0: zero
            std::vector<block_q8k> a((size_t)(max_tok * nb));
            quantize_row_q8k(x.data(), a.data(), n * max_tok);
            std::vector<float> ref((size_t)(rows * max_tok));
            set_simd_level("scalar");
            for (int r = 0; r < rows; ++r)
                for (int t = 0; t < max_tok; ++t)
                    ref[(size_t)(t * rows + r)] = vec_dot_q8k(type, w.data() + r * rb, a.data() + t * nb, n);
            for (const std::string& lv : levels()) {
                set_simd_level(lv.c_str());
                for (int n_tok = 1; n_tok <= max_tok; ++n_tok) {
                    if (n_tok > 17 && n_tok < 22) continue;
                    INFO("type " << ggml_type_name(type) << " nb " << nb << " level " << lv << " n_tok " << n_tok);
                    std::vector<float> got((size_t)(rows * n_tok));
                    for (int r = 0; r < rows; ++r)
                        vec_dot_q8k_multi(type, w.data() + r * rb, a.data(), nb, n_tok, n, got.data() + r, rows);
                    for (size_t i = 0; i < got.size(); ++i) REQUIRE(same(got[i], ref[i]));
                }
            }
        }
    }
}

TEST_CASE("Q8K dots: one token against a range of rows gives each row's scalar bits", "[quant]") {
    // vec_dot_q8k_rows (the one-token matvec path): the AVX-512 short-row form packs the
    // (row, block) pairs of chunks of rows (64 / nb rows for nb <= 8, 8 rows for nb 9..16);
    // row counts cross those chunks; a row of all-zero blocks; row_batch and few_tokens off
    // (per-row calls); with and without prefetch.
    RestoreLevel restore;
    std::mt19937 rng(23);
    for (uint32_t type : {(uint32_t)GGML_TYPE_Q4_K, (uint32_t)GGML_TYPE_Q5_K, (uint32_t)GGML_TYPE_Q6_K,
                          (uint32_t)GGML_TYPE_Q8_0, (uint32_t)GGML_TYPE_Q4_0}) {
        for (int64_t nb : {1, 2, 3, 5, 8, 9, 16, 17}) {
            const int64_t n = 256 * nb;
            const int rows = 45;  // nb = 3: chunks of 21 rows; nb = 2: 32
            std::vector<uint8_t> w = random_weights(rng, type, rows * n, nb == 5 ? 300.0f : 0.02f);
            const int64_t rb = (int64_t)w.size() / rows;
            std::memset(w.data() + 22 * rb, 0, (size_t)rb);  // row 22: all-zero blocks
            std::vector<float> x = random_floats(rng, n, 2.5f);
            std::vector<block_q8k> a((size_t)nb);
            quantize_row_q8k(x.data(), a.data(), n);
            std::vector<float> ref((size_t)rows);
            set_simd_level("scalar");
            for (int r = 0; r < rows; ++r) ref[(size_t)r] = vec_dot_q8k(type, w.data() + r * rb, a.data(), n);
            for (const std::string& lv : levels()) {
                set_simd_level(lv.c_str());
                for (int mode = 0; mode < 3; ++mode) {  // 0: defaults, 1: row_batch off, 2: few_tokens off
                    cpu_tuning_set("row_batch", mode == 1 ? 0 : 1);
                    cpu_tuning_set("few_tokens", mode == 2 ? 0 : 1);
                    for (int r0 : {0, 1, 7}) {
                        for (int nr : {1, 2, 8, 21, 22, 33, rows - r0}) {
                            if (r0 + nr > rows) continue;
                            INFO("type " << ggml_type_name(type) << " nb " << nb << " level " << lv << " mode " << mode
                                         << " rows " << r0 << "+" << nr);
                            std::vector<float> got((size_t)nr, -1.0f);
                            vec_dot_q8k_rows(type, w.data() + r0 * rb, (size_t)rb, nr, a.data(), n, got.data(),
                                             nr % 2 ? 0 : 256);
                            for (int r = 0; r < nr; ++r) REQUIRE(same(got[(size_t)r], ref[(size_t)(r0 + r)]));
                        }
                    }
                }
            }
        }
    }
    cpu_tuning_set("row_batch", 1);
    cpu_tuning_set("few_tokens", 1);
    CHECK_THROWS_AS(vec_dot_q8k_rows(GGML_TYPE_Q4_K, nullptr, 144, -1, nullptr, 256, nullptr), std::invalid_argument);
}

TEST_CASE("Q8K dot equals the canonical block expression on a hand-built case", "[quant]") {
    RestoreLevel restore;
    // Q6_K block with every code 63 (value +31) and scale 2, d = 0.5; activations all 1 (d = 0.25).
    block_q6_K w;
    std::memset(w.ql, 0xff, sizeof(w.ql));
    std::memset(w.qh, 0xff, sizeof(w.qh));
    for (auto& s : w.scales) s = 2;
    w.d = canon_f32_to_f16(0.5f);
    block_q8k a;
    a.d = 0.25f;
    for (auto& q : a.qs) q = 1;
    for (auto& s : a.bsums) s = 16;
    const float want = (0.25f * 0.5f) * (float)(256 * 31 * 2);
    for (const std::string& lv : levels()) {
        set_simd_level(lv.c_str());
        CHECK(vec_dot_q8k(GGML_TYPE_Q6_K, &w, &a, 256) == want);
    }
}

TEST_CASE("canon_dot twins equal canon_dot_ref", "[quant]") {
    RestoreLevel restore;
    std::mt19937 rng(4);
    for (const std::string& lv : levels()) {
        set_simd_level(lv.c_str());
        for (int64_t n : {0, 1, 3, 15, 16, 17, 31, 32, 33, 47, 64, 95, 96, 97, 1000, 2048, 4099}) {
            INFO("level " << lv << " n " << n);
            std::vector<float> a = random_floats(rng, n, 2.0f), b = random_floats(rng, n, 1.0f);
            REQUIRE(bits_of(canon_dot(a.data(), b.data(), n)) == bits_of(canon_dot_ref(a.data(), b.data(), n)));
            // -0.0 lane partials must survive the tail (products round to -0.0)
            std::vector<float> z1((size_t)n, -1e-30f), z2((size_t)n, 1e-30f);
            const float r = canon_dot(z1.data(), z2.data(), n);
            REQUIRE(bits_of(r) == bits_of(canon_dot_ref(z1.data(), z2.data(), n)));
            REQUIRE(std::signbit(r) == (n >= 32));
        }
    }
}

TEST_CASE("canon_axpy and canon_swiglu twins equal the scalar definitions", "[quant]") {
    RestoreLevel restore;
    std::mt19937 rng(11);
    // edge values: NaN, infinities, signed zeros, the canon_exp cut-offs (+-1 ulp) and arguments
    // whose power of two needs canon_exp's rescaling (|g| near 87.3 .. 103.97)
    const float inf = std::numeric_limits<float>::infinity();
    const float edges[] = {std::nanf(""), inf, -inf, 0.0f, -0.0f, -88.72283935546875f,
                           std::nextafter(-88.72283935546875f, -inf), std::nextafter(-88.72283935546875f, 0.0f),
                           103.972076416015625f, std::nextafter(103.972076416015625f, inf),
                           std::nextafter(103.972076416015625f, 0.0f), 87.0f, 87.4f, 88.0f, -87.4f, -88.0f,
                           95.0f, 100.0f, 1e-40f, -1e-40f, 3.0e38f, -3.0e38f};
    for (const std::string& lv : levels()) {
        for (int64_t n : {0, 1, 7, 8, 9, 16, 31, 64, 128, 768, 1003}) {
            INFO("level " << lv << " n " << n);
            std::vector<float> g = random_floats(rng, n, 1.5f), u = random_floats(rng, n, 1.0f),
                               y0 = random_floats(rng, n, 1.0f);
            for (int64_t i = 0; i < n; i += 3) g[(size_t)i] = edges[(size_t)(rng() % (sizeof(edges) / sizeof(float)))];
            const float a = random_floats(rng, 1, 1.0f)[0];
            std::vector<float> want_y = y0, want_s((size_t)n), got_y = y0, got_s((size_t)n);
            for (int64_t i = 0; i < n; ++i) {
                want_y[(size_t)i] = canon_fma(a, g[(size_t)i], y0[(size_t)i]);
                want_s[(size_t)i] = canon_silu(g[(size_t)i]) * u[(size_t)i];
            }
            set_simd_level(lv.c_str());
            canon_axpy(a, g.data(), got_y.data(), n);
            canon_swiglu(g.data(), u.data(), got_s.data(), n);
            for (int64_t i = 0; i < n; ++i) {
                INFO("i " << i << " g " << g[(size_t)i]);
                REQUIRE(same(got_y[(size_t)i], want_y[(size_t)i]));
                REQUIRE(same(got_s[(size_t)i], want_s[(size_t)i]));
            }
            // a block of 8 that stays on the vector path throughout (moderate values)
            std::vector<float> gm((size_t)n), sm((size_t)n);
            for (int64_t i = 0; i < n; ++i) gm[(size_t)i] = (float)((int)(rng() % 2001) - 1000) * 0.037f;
            canon_swiglu(gm.data(), u.data(), sm.data(), n);
            for (int64_t i = 0; i < n; ++i) REQUIRE(same(sm[(size_t)i], canon_silu(gm[(size_t)i]) * u[(size_t)i]));
        }
    }
    CHECK_THROWS_AS(canon_axpy(1.0f, nullptr, nullptr, -1), std::invalid_argument);
    CHECK_THROWS_AS(canon_swiglu(nullptr, nullptr, nullptr, -1), std::invalid_argument);
}

TEST_CASE("canon_f16_to_f32_row twins equal canon_f16_to_f32 for every f16", "[quant]") {
    RestoreLevel restore;
    std::vector<uint16_t> all(65536);
    for (uint32_t i = 0; i < 65536; ++i) all[i] = (uint16_t)i;  // NaNs (quiet and signalling) included
    std::vector<float> want(65536);
    for (uint32_t i = 0; i < 65536; ++i) want[i] = canon_f16_to_f32((uint16_t)i);
    for (const std::string& lv : levels()) {
        set_simd_level(lv.c_str());
        INFO("level " << lv);
        std::vector<float> got(65536);
        canon_f16_to_f32_row(all.data(), got.data(), 65536);
        for (uint32_t i = 0; i < 65536; ++i) {
            INFO("h " << i);
            REQUIRE(std::memcmp(&got[i], &want[i], 4) == 0);
        }
        // odd offsets and lengths (tails), untouched output beyond n
        for (int64_t off : {1, 3, 0x7c00 - 5, 0xfc00 - 2}) {
            for (int64_t n : {0, 1, 7, 9, 130}) {
                std::vector<float> y((size_t)n + 1, 12.5f);
                canon_f16_to_f32_row(all.data() + off, y.data(), n);
                for (int64_t i = 0; i < n; ++i) REQUIRE(std::memcmp(&y[(size_t)i], &want[(size_t)(off + i)], 4) == 0);
                REQUIRE(y[(size_t)n] == 12.5f);
            }
        }
    }
    CHECK_THROWS_AS(canon_f16_to_f32_row(nullptr, nullptr, -1), std::invalid_argument);
}

TEST_CASE("vec_dot_f32act is canon_dot of the dequantised row", "[quant]") {
    RestoreLevel restore;
    std::mt19937 rng(5);
    const int64_t n = 1024;
    std::vector<float> x = random_floats(rng, n, 0.5f), scratch((size_t)n), deq((size_t)n);
    for (uint32_t type : {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q8_0,
                          GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K}) {
        std::vector<float> src = random_floats(rng, n, 0.5f);
        std::vector<uint8_t> w((size_t)row_bytes(type, n));
        quantize_row(type, src.data(), w.data(), n);
        dequantize_row(type, w.data(), deq.data(), n);
        const float want = canon_dot_ref(deq.data(), x.data(), n);
        for (const std::string& lv : levels()) {
            set_simd_level(lv.c_str());
            CHECK(bits_of(vec_dot_f32act(type, w.data(), x.data(), n, scratch.data())) == bits_of(want));
        }
    }
}

TEST_CASE("quantiser round trips stay within the documented bounds", "[quant]") {
    std::mt19937 rng(6);
    std::normal_distribution<float> N(0.0f, 1.0f);
    const int64_t n = 1 << 16;
    std::vector<float> x((size_t)n), y((size_t)n);
    for (auto& v : x) v = N(rng);
    struct Bound {
        uint32_t type;
        double bound;
    };
    for (const Bound& b : {Bound{GGML_TYPE_F16, 3e-4}, Bound{GGML_TYPE_BF16, 2.5e-3}, Bound{GGML_TYPE_Q8_0, 6e-3},
                           Bound{GGML_TYPE_Q6_K, 0.02}, Bound{GGML_TYPE_Q5_K, 0.04}, Bound{GGML_TYPE_Q4_K, 0.08},
                           Bound{GGML_TYPE_Q4_0, 0.10}}) {
        std::vector<uint8_t> q((size_t)row_bytes(b.type, n));
        quantize_row(b.type, x.data(), q.data(), n);
        dequantize_row(b.type, q.data(), y.data(), n);
        double num = 0, den = 0;
        for (int64_t i = 0; i < n; ++i) {
            num += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
            den += (double)x[i] * x[i];
        }
        INFO(ggml_type_name(b.type) << " relative RMS " << std::sqrt(num / den));
        CHECK(std::sqrt(num / den) < b.bound);
        CHECK(std::sqrt(num / den) > 0.0);
    }
}

TEST_CASE("bad types and lengths are reported", "[quant]") {
    std::vector<uint8_t> raw(1024);
    std::vector<float> out(256);
    try {
        dequantize_row(GGML_TYPE_Q4_1, raw.data(), out.data(), 32);
        FAIL("no exception");
    } catch (const UnsupportedType& e) {
        CHECK(std::string(e.what()).find("Q4_1") != std::string::npos);
    }
    try {
        dequantize_row(77, raw.data(), out.data(), 32);
        FAIL("no exception");
    } catch (const UnsupportedType& e) {
        CHECK(std::string(e.what()).find("type#77") != std::string::npos);
    }
    try {
        quantize_row(GGML_TYPE_IQ2_XXS, out.data(), raw.data(), 256);
        FAIL("no exception");
    } catch (const UnsupportedType& e) {
        CHECK(std::string(e.what()).find("IQ2_XXS") != std::string::npos);
    }
    block_q8k a[2];
    try {
        vec_dot_q8k(GGML_TYPE_F16, raw.data(), a, 256);
        FAIL("no exception");
    } catch (const UnsupportedType& e) {
        CHECK(std::string(e.what()).find("F16") != std::string::npos);
    }
    CHECK_THROWS_AS(dequantize_row(GGML_TYPE_Q4_K, raw.data(), out.data(), 100), std::invalid_argument);
    CHECK_THROWS_AS(vec_dot_q8k(GGML_TYPE_Q4_K, raw.data(), a, 300), std::invalid_argument);
    CHECK_THROWS_AS(vec_dot_q8k_multi(GGML_TYPE_Q4_K, raw.data(), a, 1, 1, 128, out.data(), 1), std::invalid_argument);
    CHECK_THROWS_AS(set_simd_level("sse9"), std::invalid_argument);
    CHECK(type_has_q8k_dot(GGML_TYPE_Q6_K));
    CHECK_FALSE(type_has_q8k_dot(GGML_TYPE_BF16));
}
