// canon.h — the canonical float arithmetic of qwen3moe (ARCHITECTURE.md section 2).
//
// Every float value the engine produces is defined by ONE sequence of binary32 operations,
// written here once and executed by both backends: host code is built with
// -ffp-contract=off, device code with -fmad=false, and an FMA is written as fmaf where one
// is meant. Nothing here may call a platform expf/__expf/rsqrtf.
//
// Rules (CPU SIMD and CUDA kernels must reproduce them exactly):
//  * canon_dot(a, b, n) / canon_sum: 32 lane-strided partials — lane l accumulates the
//    elements i = l, l+32, l+64, ... in ascending i (fmaf for products, + for sums), starting
//    from +0.0f — then the fixed tree  for s = 16, 8, 4, 2, 1: p[l] = p[l] + p[l+s]  (this is
//    exactly a warp's __shfl_down_sync reduction).
//  * Attention sums over key positions use tiles of kAttnTile positions: inside a tile the
//    positions are accumulated sequentially in ascending order from +0.0f; tile results are
//    then added sequentially in ascending tile order from +0.0f (split-K friendly).
//  * exp: canon_exp below (range reduction + degree-7 polynomial, explicit fmaf).
//  * silu(x) = x / (1 + canon_exp(-x)); rsqrt(v) = 1 / sqrt(v) with IEEE sqrt and division.
//  * Conversions: int32 -> float rounds to nearest; f16 <-> f32 by the bit-exact helpers here.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define Q3_HD static __host__ __device__ __forceinline__
#else
// static: every translation unit gets its own copy, so a copy compiled with AVX-512 flags in a
// *-avx512.cpp file can never be linked into baseline code (no ODR merging across ISA flags).
#define Q3_HD static inline
#endif

namespace qwen3moe {

constexpr int kCanonLanes = 32;  // lanes of the canonical strided reduction
constexpr int kAttnTile = 128;   // key positions per attention tile

Q3_HD float canon_bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, 4);
    return f;
#endif
}

Q3_HD uint32_t canon_float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
#endif
}

// IEEE-exact operations, spelled so the device compiler cannot change them.
Q3_HD float canon_fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
    return __fmaf_rn(a, b, c);
#else
    return std::fmaf(a, b, c);
#endif
}
Q3_HD float canon_div(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}
Q3_HD float canon_sqrt(float a) {
#if defined(__CUDA_ARCH__)
    return __fsqrt_rn(a);
#else
    return std::sqrt(a);
#endif
}
Q3_HD float canon_rint(float a) {  // round half to even
#if defined(__CUDA_ARCH__)
    return rintf(a);
#else
    return std::nearbyint(a);
#endif
}

// ---- half precision, bit-exact on both sides -------------------------------------------

Q3_HD float canon_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do {
                ++e;
                mant <<= 1;
            } while ((mant & 0x400u) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + (127 - 15)) << 23) | (mant << 13);
    }
    return canon_bits_to_float(bits);
}

// f32 -> f16, round to nearest even, overflow to inf, NaN stays NaN (quiet).
Q3_HD uint16_t canon_f32_to_f16(float f) {
    const uint32_t x = canon_float_to_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) {  // inf or NaN
        return (uint16_t)(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u | ((absx >> 13) & 0x3ffu) : 0u));
    }
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to >= 65520 -> inf
    if (absx < 0x38800000u) {                                    // result subnormal or zero
        if (absx < 0x33000000u) return (uint16_t)sign;           // < 2^-25: rounds to 0
        const uint32_t e = absx >> 23;
        const uint32_t m = (absx & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - e;  // 14 + (113 - e): 14..24
        uint32_t r = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((absx >> 13) - (112u << 10));
    const uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return (uint16_t)(sign | r);
}

Q3_HD float canon_bf16_to_f32(uint16_t h) { return canon_bits_to_float((uint32_t)h << 16); }

// ---- transcendentals --------------------------------------------------------------------

// e^x. Max relative error ~2e-7 against double over the float range; exact 0 below ~-103.97,
// +inf above 88.7228; NaN propagates.
Q3_HD float canon_exp(float x) {
    if (x != x) return x;
    if (x > 88.72283935546875f) return canon_bits_to_float(0x7f800000u);
    if (x < -103.972076416015625f) return 0.0f;
    const float n = canon_rint(x * 1.44269502162933349609375f);
    float r = canon_fma(n, -0.693145751953125f, x);  // ln2 high part (exact product)
    r = canon_fma(n, -1.428606765330187045e-06f, r);  // ln2 low part
    float p = 1.98412698e-4f;                          // 1/5040
    p = canon_fma(p, r, 1.38888889e-3f);               // 1/720
    p = canon_fma(p, r, 8.33333333e-3f);               // 1/120
    p = canon_fma(p, r, 4.16666667e-2f);               // 1/24
    p = canon_fma(p, r, 1.66666667e-1f);               // 1/6
    p = canon_fma(p, r, 0.5f);
    p = canon_fma(p, r, 1.0f);
    p = canon_fma(p, r, 1.0f);
    int ni = (int)n;
    if (ni > 127) {
        p = p * 2.0f;
        ni -= 1;
    }
    if (ni < -126) {
        p = p * 5.42101086242752217e-20f;  // 2^-64
        ni += 64;
    }
    return p * canon_bits_to_float((uint32_t)(ni + 127) << 23);
}

Q3_HD float canon_silu(float x) { return canon_div(x, 1.0f + canon_exp(-x)); }

Q3_HD float canon_rsqrt(float v) { return canon_div(1.0f, canon_sqrt(v)); }

// ---- canonical reductions (scalar reference; SIMD/CUDA twins reproduce them) ------------

// The fixed tree over 32 lane partials: for s = 16..1: p[l] = p[l] + p[l+s].
Q3_HD float canon_tree32(float* p) {
    for (int s = kCanonLanes / 2; s >= 1; s >>= 1)
        for (int l = 0; l < s; ++l) p[l] = p[l] + p[l + s];
    return p[0];
}

// sum_i a[i]*b[i] by the 32-lane rule.
Q3_HD float canon_dot_ref(const float* a, const float* b, int64_t n) {
    float p[kCanonLanes];
    for (int l = 0; l < kCanonLanes; ++l) p[l] = 0.0f;
    for (int64_t i = 0; i < n; ++i) p[i % kCanonLanes] = canon_fma(a[i], b[i], p[i % kCanonLanes]);
    return canon_tree32(p);
}

// sum_i a[i] by the 32-lane rule (lane partials use +).
Q3_HD float canon_sum_ref(const float* a, int64_t n) {
    float p[kCanonLanes];
    for (int l = 0; l < kCanonLanes; ++l) p[l] = 0.0f;
    for (int64_t i = 0; i < n; ++i) p[i % kCanonLanes] = p[i % kCanonLanes] + a[i];
    return canon_tree32(p);
}

}  // namespace qwen3moe
