// Catch2 tests of the VecOps tables (ops/vec-ops.h): every SIMD level gives the bits of the
// scalar definitions (canon_exp, canon_f32_to_f16, rope_neox, rms_norm, softmax_canon,
// attention_head) over hostile inputs: NaN (quiet and signalling payloads), +-inf, +-0,
// subnormals, the canon_exp cut-offs and rescaled powers of two, huge and tiny magnitudes, every
// tail length, aliasing, f16 KV rows holding NaN and inf.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "float-bits.h"
#include "ops/attention.h"
#include "ops/canon.h"
#include "ops/moe-router.h"
#include "ops/rms-norm.h"
#include "ops/rope.h"
#include "ops/softmax.h"
#include "ops/vec-ops.h"
#include "quant/quant.h"

using namespace qwen3moe;
using qwen3moe::test::bits;

namespace {

std::vector<std::string> simd_levels_here() {
    std::vector<std::string> out;
    for (const char* l : {"scalar", "avx2", "avx512vnni"})
        if (simd_level_available(l)) out.push_back(l);
    return out;
}

struct RestoreSimd {
    ~RestoreSimd() { set_simd_level("auto"); }
};

// Same bits, any NaN equal to any NaN (NaN sign/payload is unspecified by the contract).
bool same_bits(float a, float b) { return (std::isnan(a) && std::isnan(b)) || bits(a) == bits(b); }

float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

const float kInf = std::numeric_limits<float>::infinity();

// Hostile floats: specials, exp cut-offs +-1 ulp, rescaling region, subnormals, huge values.
std::vector<float> hostile_floats() {
    std::vector<float> v = {std::nanf(""), -std::nanf(""), from_bits(0x7f800001u), from_bits(0xffa00000u), kInf, -kInf,
                            0.0f, -0.0f, 1e-45f, -1e-45f, 1e-40f, -1e-40f, 1.17549435e-38f, 3.4028235e38f,
                            -3.4028235e38f, 1.0f, -1.0f, 0.5f, 65504.0f, 65520.0f, -65520.0f, 6.1e-5f, 5.96e-8f};
    for (float c : {88.72283935546875f, -103.972076416015625f, 88.0f, 87.3365f, -87.3365f, -88.0f, -95.0f, -100.0f,
                    -103.0f, 64.0f, -126.0f * 0.6931472f, 127.0f * 0.6931472f, 127.5f * 0.6931472f}) {
        v.push_back(c);
        v.push_back(std::nextafter(c, kInf));
        v.push_back(std::nextafter(c, -kInf));
        v.push_back(-c);
    }
    return v;
}

}  // namespace

TEST_CASE("vec-ops exp twins equal canon_exp for hostile inputs and a sweep of all bit patterns", "[vecops]") {
    RestoreSimd restore;
    std::vector<float> x = hostile_floats();
    for (uint64_t u = 0; u < (1ull << 32); u += 4093) x.push_back(from_bits((uint32_t)u));  // ~1M patterns
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> U(-110.0f, 95.0f);
    for (int i = 0; i < 200000; ++i) x.push_back(U(rng));
    const int64_t n = (int64_t)x.size();
    const float subs[] = {0.0f, -0.0f, 1.5f, -87.0f, 100.0f, kInf, -kInf, std::nanf("")};
    for (const std::string& lv : simd_levels_here()) {
        INFO("level " << lv);
        set_simd_level(lv.c_str());
        const VecOps& ops = vec_ops();
        REQUIRE(std::string(ops.name) == lv);
        std::vector<float> y((size_t)n);
        ops.exp(x.data(), y.data(), n);
        for (int64_t i = 0; i < n; ++i) {
            INFO("x bits " << bits(x[(size_t)i]));
            REQUIRE(bits(y[(size_t)i]) == bits(canon_exp(x[(size_t)i])));  // NaN: x itself, exactly
        }
        for (float m : subs) {
            INFO("m " << m);
            ops.exp_sub(x.data(), m, y.data(), n);
            for (int64_t i = 0; i < n; ++i) REQUIRE(same_bits(y[(size_t)i], canon_exp(x[(size_t)i] - m)));
        }
        // every tail length, in place (y aliases x), output beyond n untouched
        for (int64_t len = 0; len <= 33; ++len) {
            std::vector<float> z(x.begin(), x.begin() + len + 1);
            const float sentinel = z[(size_t)len];
            ops.exp(z.data(), z.data(), len);
            for (int64_t i = 0; i < len; ++i) REQUIRE(bits(z[(size_t)i]) == bits(canon_exp(x[(size_t)i])));
            REQUIRE(bits(z[(size_t)len]) == bits(sentinel));
        }
    }
}

TEST_CASE("vec-ops f32 -> f16 twins equal canon_f32_to_f16 (all exponents and mantissa tops, rounding edges)", "[vecops]") {
    RestoreSimd restore;
    // every value of the upper 19 bits (sign, exponent, top 10 mantissa bits), each with low-13-bit
    // patterns at and around the rounding boundary, and a few random ones
    std::vector<float> x;
    const uint32_t lows[] = {0x0000u, 0x0001u, 0x0fffu, 0x1000u, 0x1001u, 0x1fffu, 0x0800u, 0x17ffu};
    std::mt19937 rng(3);
    for (uint32_t hi = 0; hi < (1u << 19); ++hi) {
        for (uint32_t lo : lows) x.push_back(from_bits((hi << 13) | lo));
        x.push_back(from_bits((hi << 13) | (rng() & 0x1fffu)));
    }
    const int64_t n = (int64_t)x.size();
    std::vector<uint16_t> want((size_t)n);
    for (int64_t i = 0; i < n; ++i) want[(size_t)i] = canon_f32_to_f16(x[(size_t)i]);
    for (const std::string& lv : simd_levels_here()) {
        INFO("level " << lv);
        set_simd_level(lv.c_str());
        std::vector<uint16_t> got((size_t)n + 1, 0x1234u);
        vec_ops().f32_to_f16(x.data(), got.data(), n);
        for (int64_t i = 0; i < n; ++i) {
            INFO("x bits " << bits(x[(size_t)i]));
            REQUIRE(got[(size_t)i] == want[(size_t)i]);  // NaNs included: exact payload rule
        }
        REQUIRE(got[(size_t)n] == 0x1234u);
        for (int64_t len = 0; len <= 17; ++len) {
            std::vector<uint16_t> g((size_t)len + 1, 0xbeefu);
            vec_ops().f32_to_f16(x.data() + 8 * 0x3c00 + 3, g.data(), len);
            for (int64_t i = 0; i < len; ++i) REQUIRE(g[(size_t)i] == want[(size_t)(8 * 0x3c00 + 3 + i)]);
            REQUIRE(g[(size_t)len] == 0xbeefu);
        }
    }
}

TEST_CASE("vec-ops rope_neox, rms_norm and softmax_canon twins equal the scalar definitions", "[vecops]") {
    RestoreSimd restore;
    std::mt19937 rng(21);
    std::normal_distribution<float> N(0.0f, 1.0f);
    const std::vector<float> edges = hostile_floats();
    auto vec = [&](int64_t n, bool hostile, float scale) {
        std::vector<float> v((size_t)n);
        for (auto& e : v) e = N(rng) * scale * std::exp(2.0f * N(rng));
        if (hostile)
            for (int64_t i = 0; i < n; i += 5) v[(size_t)i] = edges[rng() % edges.size()];
        return v;
    };
    for (int64_t n : {2, 8, 16, 30, 64, 128, 130, 256, 2048}) {
        for (bool hostile : {false, true}) {
            INFO("n " << n << " hostile " << hostile);
            const std::vector<float> x = vec(n, hostile, 1.0f), w = vec(n, hostile, 1.0f);
            const std::vector<float> c = vec(n / 2, hostile, 1.0f), s = vec(n / 2, hostile, 1.0f);
            const std::vector<float> l = vec(n, hostile, 30.0f);
            set_simd_level("scalar");
            std::vector<float> want_r((size_t)n), want_n((size_t)n), want_s((size_t)n);
            rope_neox(x.data(), want_r.data(), (int)n, c.data(), s.data());
            rms_norm(x.data(), w.data(), want_n.data(), n, 1e-6f);
            softmax_canon(l.data(), want_s.data(), n);
            for (const std::string& lv : simd_levels_here()) {
                INFO("level " << lv);
                set_simd_level(lv.c_str());
                std::vector<float> r((size_t)n), nn((size_t)n), sm((size_t)n), inplace = x;
                rope_neox(x.data(), r.data(), (int)n, c.data(), s.data());
                rope_neox(inplace.data(), inplace.data(), (int)n, c.data(), s.data());
                rms_norm(x.data(), w.data(), nn.data(), n, 1e-6f);
                softmax_canon(l.data(), sm.data(), n);
                for (int64_t i = 0; i < n; ++i) {
                    INFO("i " << i);
                    REQUIRE(same_bits(r[(size_t)i], want_r[(size_t)i]));
                    REQUIRE(same_bits(inplace[(size_t)i], want_r[(size_t)i]));
                    REQUIRE(same_bits(nn[(size_t)i], want_n[(size_t)i]));
                    REQUIRE(same_bits(sm[(size_t)i], want_s[(size_t)i]));
                }
            }
        }
    }
}

TEST_CASE("vec-ops attention_head twins equal the scalar definition (f16 and f32 KV, NaN/inf rows, tiles)", "[vecops]") {
    RestoreSimd restore;
    std::mt19937 rng(5);
    std::normal_distribution<float> N(0.0f, 1.0f);
    const uint16_t f16_specials[] = {0x7e00u, 0x7d01u, 0xfc01u, 0x7c00u, 0xfc00u, 0x0001u, 0x8000u, 0x7bffu};
    for (int hd : {32, 48, 64, 96, 128}) {
        for (int n_kv : {1, 2, 7, 33, 127, 128, 129, 257, 300}) {
            for (int mode = 0; mode < 4; ++mode) {  // 0 plain, 1 wide score range, 2 specials in K/V, 3 NaN in q
                INFO("hd " << hd << " n_kv " << n_kv << " mode " << mode);
                const int64_t stride = 3 * (int64_t)hd + 8, head_off = hd + 8;  // a middle head of a wider row
                const float qscale = mode == 1 ? 40.0f : 1.0f;
                std::vector<float> q((size_t)hd), k32((size_t)(n_kv * stride)), v32((size_t)(n_kv * stride));
                for (auto& e : q) e = N(rng) * qscale;
                for (auto& e : k32) e = N(rng) * (mode == 1 ? 3.0f : 1.0f);
                for (auto& e : v32) e = N(rng);
                if (mode == 3) q[(size_t)(rng() % hd)] = std::nanf("");
                std::vector<uint16_t> k16(k32.size()), v16(v32.size());
                for (size_t i = 0; i < k32.size(); ++i) {
                    k16[i] = canon_f32_to_f16(k32[i]);
                    v16[i] = canon_f32_to_f16(v32[i]);
                }
                if (mode == 2) {
                    for (int j = 0; j < 4; ++j) {
                        const int t = (int)(rng() % n_kv), d = (int)(rng() % hd);
                        const uint16_t h = f16_specials[rng() % 8];
                        const size_t at = (size_t)(t * stride + head_off + d);
                        if (j & 1) {
                            k16[at] = h;
                            k32[at] = canon_f16_to_f32(h);
                        } else {
                            v16[at] = h;
                            v32[at] = canon_f16_to_f32(h);
                        }
                    }
                }
                for (bool f16 : {true, false}) {
                    INFO("f16 " << f16);
                    const void* kp = f16 ? (const void*)k16.data() : (const void*)k32.data();
                    const void* vp = f16 ? (const void*)v16.data() : (const void*)v32.data();
                    std::vector<float> buf((size_t)(n_kv + 2 * hd));
                    AttnScratch sc{buf.data(), buf.data() + n_kv, buf.data() + n_kv + hd};
                    set_simd_level("scalar");
                    std::vector<float> want((size_t)hd);
                    attention_head(q.data(), kp, vp, f16, stride, head_off, n_kv, hd, attention_kq_scale(hd), want.data(), sc);
                    for (const std::string& lv : simd_levels_here()) {
                        INFO("level " << lv);
                        set_simd_level(lv.c_str());
                        std::vector<float> got((size_t)hd, 7.0f);
                        attention_head(q.data(), kp, vp, f16, stride, head_off, n_kv, hd, attention_kq_scale(hd), got.data(), sc);
                        for (int d = 0; d < hd; ++d) {
                            INFO("d " << d);
                            REQUIRE(same_bits(got[(size_t)d], want[(size_t)d]));
                        }
                    }
                }
            }
        }
    }
}

TEST_CASE("router_topk's one-pass insertion equals the selection-sort rule (ties, NaN, +-0, inf)", "[vecops]") {
    std::mt19937 rng(9);
    const float pool[] = {0.0f, -0.0f, 0.25f, 0.25f, 0.5f, 1.0f, std::nanf(""), -std::nanf(""), kInf, -kInf,
                          1e-45f, 3.0e38f, -1.0f};
    for (int n_expert : {1, 2, 3, 8, 17, 64, 128, 200}) {
        for (int mode = 0; mode < 4; ++mode) {  // 0 random, 1 few distinct values (ties), 2 specials, 3 all NaN
            for (int rep = 0; rep < 20; ++rep) {
                std::vector<float> p((size_t)n_expert);
                std::uniform_real_distribution<float> U(0.0f, 1.0f);
                for (auto& e : p) {
                    if (mode == 0) e = U(rng);
                    if (mode == 1) e = (float)(rng() % 4) * 0.125f;
                    if (mode == 2) e = (rng() % 3) ? pool[rng() % (sizeof(pool) / sizeof(float))] : U(rng);
                    if (mode == 3) e = std::nanf("");
                }
                for (int k = 1; k <= n_expert && k <= 70; k += (k < 10 ? 1 : 7)) {
                    INFO("n_expert " << n_expert << " mode " << mode << " k " << k);
                    std::vector<int32_t> i1((size_t)k, -7), i2((size_t)k, -7);
                    std::vector<float> w1((size_t)k), w2((size_t)k);
                    router_topk(p.data(), n_expert, k, i1.data(), w1.data());
                    router_topk_selection(p.data(), n_expert, k, i2.data(), w2.data());
                    REQUIRE(i1 == i2);
                    for (int r = 0; r < k; ++r) REQUIRE(same_bits(w1[(size_t)r], w2[(size_t)r]));
                }
            }
        }
    }
}
