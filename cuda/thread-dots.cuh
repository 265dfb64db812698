// thread-dots.cuh — the exact integer sums of one weight block with one Q8K block, computed by
// one thread (the decode kernels' one-thread-per-(row, block) dots, decode-common.cuh), for the
// two types of the Q4_K_M files' hot matrices, written as small Q3_HD functions so the CPU build
// can test them (tests_cpp/test-thread-dots.cpp). Integer sums in any order are the same
// integers (dot-canon.h), so c_b is unchanged; these form them with fewer instructions than
// Q8KBlock's 8 lane slices run in turn (matvec-q8k.cuh), whose loop the compiler keeps rolled.
//
// Q4_K (thread_q4k_sums; ~300 straight-line sm_90 instructions against ~630 executed):
//  * the 128 qs bytes in eight 16-byte loads; the 8 scales and mins decoded once, as bytes of
//    packed words (k4_unpack_scale_words);
//  * sub-block 2c (low nibbles of qs chunk c): dp4a of (w & 0x0f0f0f0f) with values 64c + l;
//    sub-block 2c + 1 (high nibbles): dp4a.u32.s32 of (w & 0xf0f0f0f0) with values 64c + 32 + l,
//    which is 16 times the dot, so those terms add up to 16 x their part of isum
//    (|16 isum| < 2^30: no overflow) and one exact shift by 4 gives it back;
//  * msum = sum_j m_j (bsums[2j] + bsums[2j+1]) from the bsums' 32-bit words.
// Q6_K (thread_q6k_isum): blocks are 210 bytes, so only 2-byte aligned; each 4-byte word comes
// from two aligned loads and a funnel shift (ld_run_a2: neighbouring words share their loads),
// ql and qh words are each loaded once for the nibble halves and 2-bit groups they serve, and
// the unsigned 6-bit values (0..63) go through dp4a.u32.s32 with the - 32 applied per sub-block
// as -32 bsums[sb] (as Q8KBlock<Q6_K> does).
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

// 4 bytes from a 2-byte aligned address (two 2-byte loads).
Q3_HD int ld_i32_a2(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
    const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
    return (int)((uint32_t)h[0] | ((uint32_t)h[1] << 16));
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

// Words w[k] = bytes p[4k .. 4k+3], k < N, of a run at a 2-byte aligned address: N + 1 aligned
// 4-byte loads and N funnel shifts. Reads up to 4 bytes past p + 4N (callers keep that inside
// the block).
template <int N>
Q3_HD void ld_run_a2(const uint8_t* p, uint32_t (&w)[N]) {
#if defined(__CUDA_ARCH__)
    const uint32_t off = (uint32_t)reinterpret_cast<uintptr_t>(p) & 3u;
    const uint32_t* b = reinterpret_cast<const uint32_t*>(p - off);  // keeps p's state space (shared)
    uint32_t a[N + 1];
    Q3_UNROLL
    for (int k = 0; k <= N; ++k) a[k] = b[k];
    Q3_UNROLL
    for (int k = 0; k < N; ++k) w[k] = __funnelshift_r(a[k], a[k + 1], off * 8u);
#else
    std::memcpy(w, p, 4 * N);
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

// isum = sum_sb sc_sb sum_i (q_i - 32) a_i (dot-canon.h) of the Q6_K block at wb (2-byte
// aligned) and the Q8K block a (4-byte aligned). Value 128 h + 32 s + l has its low 4 bits in
// nibble s >> 1 of ql[64 h + 32 (s & 1) + l] and its high 2 bits at bit 2 s of qh[32 h + l].
Q3_HD int32_t thread_q6k_isum(const uint8_t* wb, const block_q8k* a) {
    const block_q6_K* w = reinterpret_cast<const block_q6_K*>(wb);
    const uint8_t* act = reinterpret_cast<const uint8_t*>(a->qs);    // offset 4 of the block
    const uint8_t* bs = reinterpret_cast<const uint8_t*>(a->bsums);  // offset 260: 4-byte aligned
    int isum = 0;
    Q3_UNROLL
    for (int h = 0; h < 2; ++h) {
        uint32_t qh[8];
        ld_run_a2(w->qh + 32 * h, qh);
        Q3_UNROLL
        for (int s1 = 0; s1 < 2; ++s1) {  // the ql run of groups s = s1 (low nibbles) and s1 + 2 (high)
            uint32_t ql[8];
            ld_run_a2(w->ql + 64 * h + 32 * s1, ql);
            Q3_UNROLL
            for (int hi = 0; hi < 2; ++hi) {
                const int s = s1 + 2 * hi, v0 = 128 * h + 32 * s, sb = 8 * h + 2 * s;
                int d0 = 0, d1 = 0;
                Q3_UNROLL
                for (int k = 0; k < 8; ++k) {
                    const uint32_t q = ((ql[k] >> (4 * hi)) & 0x0f0f0f0fu) | (((qh[k] >> (2 * s)) & 0x03030303u) << 4);
                    if (k < 4)
                        d0 = dp4a_u8s8(q, ld_i32_a4(act + v0 + 4 * k), d0);
                    else
                        d1 = dp4a_u8s8(q, ld_i32_a4(act + v0 + 4 * k), d1);
                }
                const uint32_t bw = (uint32_t)ld_i32_a4(bs + 2 * sb);  // bsums[sb], bsums[sb + 1]
                const int b0 = (int)(int16_t)(bw & 0xffffu), b1 = (int)(int16_t)(bw >> 16);
                isum += (int)w->scales[sb] * (d0 - 32 * b0) + (int)w->scales[sb + 1] * (d1 - 32 * b1);
            }
        }
    }
    return isum;
}

}  // namespace qwen3moe::cuda
