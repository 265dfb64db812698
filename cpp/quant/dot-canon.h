// dot-canon.h — the canonical float part of the weight x Q8K dot products (shared with CUDA).
//
// A weight row of n values (n % 256 == 0) times Q8K activations is defined blockwise: for
// activation block b (256 values, scale da) the integer sums over that block are exact int32
// values (any summation order, any SIMD/warp split gives the same integers); the float
// contribution c_b is ONE of the expressions below, written with explicit fma; the row result
// is the canonical 32-lane sum of the c_b: lane b % 32 accumulates p = p + c_b in ascending b
// starting from +0.0f, then canon_tree32 (ops/canon.h). CPU scalar, AVX2, AVX-512 and CUDA
// kernels call these functions (or reproduce them exactly) and so return identical bits.
// (A NaN result is NaN on every path; its sign and payload are unspecified.)
//
// Integer sums per activation block (q: weight values, a: activation qs, sc/m: sub-block
// scale/min, bsums from the Q8K block):
//  * Q4_K / Q5_K: 8 sub-blocks of 32, unsigned q (0..15 / 0..31), 6-bit sc_j, m_j:
//      isum = sum_j sc_j * sum_i q_i a_i ;  msum = sum_j m_j * sum_i a_i   (|isum| < 2^26)
//  * Q6_K: 16 sub-blocks of 16, signed q = stored - 32, int8 sc_j:
//      isum = sum_j sc_j * sum_i q_i a_i                                   (|isum| < 2^27)
//  * Q8_0 / Q4_0: 8 weight blocks of 32 (q = int8 / nibble - 8): isum_k = sum_i q_i a_i.
#pragma once
#include <cstdint>

#include "ops/canon.h"

namespace qwen3moe {

// These helpers are `static` (internal linkage): the SIMD translation units are compiled with
// AVX2/AVX-512 flags, and an out-of-line COMDAT copy from them must never be picked by the
// linker for baseline code.

// Q4_K / Q5_K: d, dmin are the block's f16 scales as float.
Q3_HD float canon_block_q4k(float da, float d, float dmin, int32_t isum, int32_t msum) {
    return canon_fma(da * d, (float)isum, -((da * dmin) * (float)msum));
}

// Q6_K: d is the block's f16 scale as float.
Q3_HD float canon_block_q6k(float da, float d, int32_t isum) { return (da * d) * (float)isum; }

// Q8_0 / Q4_0: dk[k], isum[k] for the 8 weight blocks k = 0..7 covering the activation block.
Q3_HD float canon_block_q8_0(float da, const float* dk, const int32_t* isum) {
    float inner = 0.0f;
    for (int k = 0; k < 8; ++k) inner = canon_fma(dk[k], (float)isum[k], inner);
    return da * inner;
}

// The row rule: p[32] lane partials, lane b % 32 accumulates the block contributions in
// ascending b from +0.0f; the row value is canon_tree32(p).
Q3_HD void canon_row_init(float* p) {
    for (int l = 0; l < kCanonLanes; ++l) p[l] = 0.0f;
}
Q3_HD void canon_row_add(float* p, int64_t b, float c) {
    p[b % kCanonLanes] = p[b % kCanonLanes] + c;
}

}  // namespace qwen3moe
