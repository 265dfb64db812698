// q4k-thread.cuh — the exact integer sums of one Q4_K block with one Q8K block, computed by one
// thread (the decode kernels' one-thread-per-(row, block) dots, decode-common.cuh), written as
// small Q3_HD functions so the CPU build can test them (tests_cpp/test-q4k-thread.cpp).
//
// The same integers as Q8KBlock<Q4_K>'s 8 lane slices (matvec-q8k.cuh), formed with fewer
// instructions: ~300 straight-line sm_90 instructions against ~630 executed by the slice loop,
// which the compiler kept rolled with a branchy scale decode per slice:
//  * the 128 qs bytes in eight 16-byte loads; the 8 scales and mins decoded once, as bytes of
//    packed words (k4_unpack_scale_words);
//  * sub-block 2c (low nibbles of qs chunk c): dp4a of (w & 0x0f0f0f0f) with values 64c + l;
//    sub-block 2c + 1 (high nibbles): dp4a.u32.s32 of (w & 0xf0f0f0f0) with values 64c + 32 + l,
//    which is 16 times the dot, so those terms add up to 16 x their part of isum
//    (|16 isum| < 2^30: no overflow) and one exact shift by 4 gives it back;
//  * msum = sum_j m_j (bsums[2j] + bsums[2j+1]) from the bsums' 32-bit words.
// Integer sums in any order are the same integers (dot-canon.h), so c_b is unchanged.
#pragma once
#include <cstdint>
#include <cstring>

#include "cuda/cuda-ops.h"
#include "quant/blocks.h"

namespace qwen3moe::cuda {

// Full unrolling in device code (host compilers do not know the pragma).
#if defined(__CUDA_ARCH__)
#define Q3_UNROLL _Pragma("unroll")
#else
#define Q3_UNROLL
#endif

// 4 bytes from a 4-byte aligned address.
Q3_HD int ld_i32_a4(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
    return *reinterpret_cast<const int*>(p);
#else
    int v;
    std::memcpy(&v, p, 4);
    return v;
#endif
}

// 16 bytes from a 16-byte aligned address.
Q3_HD void ld_16(const uint8_t* p, int* v) {
#if defined(__CUDA_ARCH__)
    const int4 q = *reinterpret_cast<const int4*>(p);
    v[0] = q.x;
    v[1] = q.y;
    v[2] = q.z;
    v[3] = q.w;
#else
    std::memcpy(v, p, 16);
#endif
}

// c + the 4 products of a's unsigned bytes with b's signed bytes (exact; dp4a.u32.s32).
Q3_HD int dp4a_u8s8(uint32_t a, int b, int c) {
#if defined(__CUDA_ARCH__)
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
#else
    for (int i = 0; i < 4; ++i) c += (int)(uint8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
#endif
}

// isum = sum_j sc_j sum_i q_i a_i and msum = sum_j m_j sum_i a_i (dot-canon.h) of the Q4_K block
// at wb (16-byte aligned) and the Q8K block a (4-byte aligned).
Q3_HD void thread_q4k_sums(const uint8_t* wb, const block_q8k* a, int32_t* isum_out, int32_t* msum_out) {
    const block_q4_K* w = reinterpret_cast<const block_q4_K*>(wb);
    uint32_t scm[4];  // scales of sub-blocks 0..3, 4..7, mins 0..3, 4..7: one per byte
    k4_unpack_scale_words((uint32_t)ld_i32_a4(w->scales), (uint32_t)ld_i32_a4(w->scales + 4),
                          (uint32_t)ld_i32_a4(w->scales + 8), scm);  // the block's bytes 4..15
    const uint8_t* act = reinterpret_cast<const uint8_t*>(a->qs);  // offset 4 of the block
    int isum_lo = 0, isum_hi16 = 0;
    Q3_UNROLL
    for (int c = 0; c < 4; ++c) {
        int q[8];
        ld_16(w->qs + 32 * c, q);
        ld_16(w->qs + 32 * c + 16, q + 4);
        int dlo = 0, dhi = 0;
        Q3_UNROLL
        for (int i = 0; i < 8; ++i) {
            dlo = dp4a_u8s8((uint32_t)q[i] & 0x0f0f0f0fu, ld_i32_a4(act + 64 * c + 4 * i), dlo);
            dhi = dp4a_u8s8((uint32_t)q[i] & 0xf0f0f0f0u, ld_i32_a4(act + 64 * c + 32 + 4 * i), dhi);
        }
        const uint32_t scw = c < 2 ? scm[0] : scm[1];
        const int sh = 16 * (c & 1);
        isum_lo += (int)((scw >> sh) & 0xffu) * dlo;
        isum_hi16 += (int)((scw >> (sh + 8)) & 0xffu) * dhi;
    }
    *isum_out = isum_lo + (isum_hi16 >> 4);  // isum_hi16 is a multiple of 16: an exact division
    const uint8_t* bs = reinterpret_cast<const uint8_t*>(a->bsums);  // offset 260: 4-byte aligned
    int msum = 0;
    Q3_UNROLL
    for (int j = 0; j < 8; ++j) {
        const uint32_t v = (uint32_t)ld_i32_a4(bs + 4 * j);
        const int pair = (int)(int16_t)(v & 0xffffu) + (int)(int16_t)(v >> 16);  // bsums[2j] + bsums[2j+1]
        const uint32_t mw = j < 4 ? scm[2] : scm[3];
        msum += (int)((mw >> (8 * (j & 3))) & 0xffu) * pair;
    }
    *msum_out = msum;
}

}  // namespace qwen3moe::cuda
