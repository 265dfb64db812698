// matvec-mma.cuh — index math of the int8 tensor-core prefill matvec (matvec-mma.cu), written
// as small Q3_HD functions so the CPU build can test them (tests_cpp/test-mma-fragments.cpp).
//
// PTX fragments (mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 and .m16n8k16, PTX ISA
// "Matrix fragments for mma.m16n8k32 / m16n8k16" with .s8): lane = 4 * g + t (g = groupID =
// lane >> 2, t = threadID_in_group = lane & 3); each .b32 register holds 4 consecutive k values
// (byte e = k offset e, little-endian).
//  * k32 A (16 x 32, row-major): register r (0..3) = row g + 8 (r & 1), k = 16 (r >> 1) + 4t + e.
//  * k32 B (32 x 8, column-major): register r (0..1) = column g, k = 16 r + 4t + e.
//  * k16 A (16 x 16): register r (0..1) = row g + 8 r, k = 4t + e;  k16 B: column g, k = 4t + e.
//  * C/D (16 x 8 s32, both shapes): register r (0..3) = row g + 8 (r >> 1), column 2t + (r & 1).
//
// A dot product over k does not depend on which value sits at which k, as long as A and B use
// the same assignment. The kernel therefore loads each lane's bytes as contiguous runs that suit
// the block layouts: "packed" order (Q4_K, Q5_K, Q8_0) gives lane t the 8 values 8t .. 8t+7 of a
// 32-value sub-block (register half h = values 8t + 4h + e), "natural" order (Q4_0: low nibbles
// are values 0..15, high nibbles 16..31) is the PTX order itself.
//
// The canonical row sum (quant/dot-canon.h) is 32 lane partials then canon_tree32. The kernel
// produces the lanes one after another in bit-reversed order (leaf i = lane canon_leaf_lane(i))
// and folds them with canon_tree_push, a binary-counter stack that performs exactly the adds of
// canon_tree32 (see the proof below), so no output needs 32 live partials.
#pragma once
#include <cstdint>
#include <cstring>

#include "cuda/cuda-ops.h"
#include "cuda/thread-dots.cuh"
#include "ops/canon.h"
#include "quant/blocks.h"

namespace qwen3moe::cuda {

// ---- PTX fragment maps (documented above) ----------------------------------------------------
Q3_HD int mma_k32_a_row(int lane, int r) { return (lane >> 2) + 8 * (r & 1); }
Q3_HD int mma_k32_a_k(int lane, int r, int e) { return 16 * (r >> 1) + 4 * (lane & 3) + e; }
Q3_HD int mma_k32_b_k(int lane, int r, int e) { return 16 * r + 4 * (lane & 3) + e; }
Q3_HD int mma_k16_a_row(int lane, int r) { return (lane >> 2) + 8 * r; }
Q3_HD int mma_k16_k(int lane, int e) { return 4 * (lane & 3) + e; }  // k16 A and B
Q3_HD int mma_b_col(int lane) { return lane >> 2; }
Q3_HD int mma_c_row(int lane, int r) { return (lane >> 2) + 8 * (r >> 1); }
Q3_HD int mma_c_col(int lane, int r) { return 2 * (lane & 3) + (r & 1); }

// ---- which value of a 32-value sub-block sits at k ----------------------------------------------
// Packed order: k = 16h + 4t + e holds value 8t + 4h + e.
Q3_HD int mma_packed_value(int k) { return 8 * ((k & 15) >> 2) + 4 * (k >> 4) + (k & 3); }
// First value the kernel loads into register half h (A: r >> 1, B: r) of `lane` (packed order).
Q3_HD int mma_packed_first(int lane, int h) { return 8 * (lane & 3) + 4 * h; }
// Natural order (Q4_0): register half h holds values 16h + 4t + e (= k).
Q3_HD int mma_natural_first(int lane, int h) { return 16 * h + 4 * (lane & 3); }

// Q4_K / Q5_K scales from the three little-endian words of the packed 12 bytes:
// k4_unpack_scale_words (quant/blocks.h; out[0] = sc 0..3, out[1] = sc 4..7, out[2] = m 0..3,
// out[3] = m 4..7, one byte each).

// ---- fragment registers from the block bytes (one .b32 register = 4 int8 values) -----------
// Loads: mma_ld4 needs a 4-byte aligned address on the device, mma_ld4_a2 a 2-byte aligned one.
Q3_HD uint32_t mma_ld4(const uint8_t* p) { return (uint32_t)ld_i32_a4(p); }
Q3_HD uint32_t mma_ld4_a2(const uint8_t* p) { return (uint32_t)ld_i32_a2(p); }
// Per-byte a - b modulo 256 (bytes of a - b stay in -128..127 for every use here).
Q3_HD uint32_t mma_vsub4(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
    return __vsub4(a, b);
#else
    uint32_t r = 0;
    for (int i = 0; i < 4; ++i) r |= (((a >> (8 * i)) - (b >> (8 * i))) & 0xffu) << (8 * i);
    return r;
#endif
}
constexpr uint32_t kMmaLo4 = 0x0f0f0f0fu;

// A register half h (0: registers 0/1, 1: registers 2/3 of the row's k32 fragment) of sub-block j
// (0..7) of the 256-value weight block at wb, for the lane with threadID_in_group t.
// Q4_K (packed order): value 32j + l = qs[32 (j/2) + l] nibble j%2; qs at byte 16.
Q3_HD uint32_t mma_a_q4k(const uint8_t* wb, int t, int j, int h) {
    return (mma_ld4(wb + 16 + 32 * (j >> 1) + mma_packed_first(t, h)) >> (4 * (j & 1))) & kMmaLo4;
}
// Q5_K (packed order): qs at byte 48 as Q4_K; the 5th bit of value 32j + l is bit j of qh[l] (byte 16).
Q3_HD uint32_t mma_a_q5k(const uint8_t* wb, int t, int j, int h) {
    const uint32_t lo = (mma_ld4(wb + 48 + 32 * (j >> 1) + mma_packed_first(t, h)) >> (4 * (j & 1))) & kMmaLo4;
    return lo | (((mma_ld4(wb + 16 + mma_packed_first(t, h)) >> j) & 0x01010101u) << 4);
}
// Q8_0 (packed order): weight block k (34 bytes: f16 d, 32 int8) holds values 32k .. 32k+31.
Q3_HD uint32_t mma_a_q8_0(const uint8_t* wb, int t, int k, int h) {
    return mma_ld4_a2(wb + 34 * k + 2 + mma_packed_first(t, h));
}
// Q4_0 (natural order): weight block k (18 bytes: f16 d, 16 qs): value l = (qs[l] & 15) - 8,
// value 16 + l = (qs[l] >> 4) - 8; half h = the nibble, bytes 4t .. 4t+3.
Q3_HD uint32_t mma_a_q4_0(const uint8_t* wb, int t, int k, int h) {
    return mma_vsub4((mma_ld4_a2(wb + 18 * k + 2 + mma_natural_first(t, 0)) >> (4 * h)) & kMmaLo4, 0x08080808u);
}
// Q6_K (k16 register of sub-block j = 0..15, values 16j + 4t + e): value 128hh + 32s + l has low
// bits ql[64hh + 32(s&1) + l] >> 4(s>>1), high bits qh[32hh + l] >> 2s (ql at 0, qh at 128), and
// is stored + 32; here j = 8hh + 2s + lh, l = 16lh + 4t + e.
Q3_HD uint32_t mma_a_q6k(const uint8_t* wb, int t, int j) {
    const int hh = j >> 3, s = (j >> 1) & 3, l0 = 16 * (j & 1) + mma_k16_k(t, 0);
    const uint32_t ql = mma_ld4_a2(wb + 64 * hh + 32 * (s & 1) + l0);
    const uint32_t qh = mma_ld4_a2(wb + 128 + 32 * hh + l0);
    return mma_vsub4(((ql >> (4 * (s >> 1))) & kMmaLo4) | (((qh >> (2 * s)) & 0x03030303u) << 4), 0x20202020u);
}
// Q6_K without the - 32 (the wide kernel: values 0..63 as unsigned A bytes, m16n8k16 .u8.s8). The
// dot of a sub-block is then D_u = sum (q + 32) b, and sum q b = D_u - 32 bs_j with bs_j =
// bsums[j] of the activation block (the sum of its 16 values 16j .. 16j+15); the wide kernel
// folds the 32 bs_j terms of all 16 sub-blocks into one k16 pair (mma_b_bsum16_k16_pair).
Q3_HD uint32_t mma_a_q6k_u(const uint8_t* wb, int t, int j) {
    const int hh = j >> 3, s = (j >> 1) & 3, l0 = 16 * (j & 1) + mma_k16_k(t, 0);
    const uint32_t ql = mma_ld4_a2(wb + 64 * hh + 32 * (s & 1) + l0);
    const uint32_t qh = mma_ld4_a2(wb + 128 + 32 * hh + l0);
    return ((ql >> (4 * (s >> 1))) & kMmaLo4) | (((qh >> (2 * s)) & 0x03030303u) << 4);
}
// Natural order (the wide kernel, matvec-mma-wide.cu): register half h of sub-block / weight block
// j holds values 16h + 4t + e, as mma_b_natural; with rows 4 words apart modulo 32 banks these
// 4-byte loads are free of bank conflicts (the packed order's 8t offsets are not).
Q3_HD uint32_t mma_a_q4k_nat(const uint8_t* wb, int t, int j, int h) {
    return (mma_ld4(wb + 16 + 32 * (j >> 1) + mma_natural_first(t, h)) >> (4 * (j & 1))) & kMmaLo4;
}
Q3_HD uint32_t mma_a_q5k_nat(const uint8_t* wb, int t, int j, int h) {
    const uint32_t lo = (mma_ld4(wb + 48 + 32 * (j >> 1) + mma_natural_first(t, h)) >> (4 * (j & 1))) & kMmaLo4;
    return lo | (((mma_ld4(wb + 16 + mma_natural_first(t, h)) >> j) & 0x01010101u) << 4);
}
Q3_HD uint32_t mma_a_q8_0_nat(const uint8_t* wb, int t, int k, int h) {
    return mma_ld4_a2(wb + 34 * k + 2 + mma_natural_first(t, h));
}
// B registers from a Q8K activation block: k32 half h of sub-block j (packed / natural order),
// k16 register of sub-block j (16 values).
Q3_HD uint32_t mma_b_packed(const block_q8k* ab, int t, int j, int h) {
    return mma_ld4(reinterpret_cast<const uint8_t*>(ab->qs) + 32 * j + mma_packed_first(t, h));
}
Q3_HD uint32_t mma_b_natural(const block_q8k* ab, int t, int j, int h) {
    return mma_ld4(reinterpret_cast<const uint8_t*>(ab->qs) + 32 * j + mma_natural_first(t, h));
}
Q3_HD uint32_t mma_b_k16(const block_q8k* ab, int t, int j) {
    return mma_ld4(reinterpret_cast<const uint8_t*>(ab->qs) + 16 * j + mma_k16_k(t, 0));
}

// ---- Q4_K / Q5_K msum = sum_j m_j * bs_j on the tensor cores (bs_j: sum of the 32 activation
// values of sub-block j = bsums[2j] + bsums[2j+1], |bs_j| <= 32 * 127) ----------------------------
// One m16n8k16 pair per block: A holds m_j at k = j (j < 8; k 8..15 zero), B holds bs_j split as
// bs_j = 128 hi_j + lo_j (lo_j = bs_j & 127 in 0..127, hi_j = bs_j >> 7 in -32..31, both int8), so
// msum = D(A, B_lo) + 128 D(A, B_hi), exact. k16 lane t holds k = 4t .. 4t+3: t = 0, 1 carry the
// 8 sub-blocks, t = 2, 3 zeros. s: the row's k4_unpack_scale_words (s[2], s[3]: m 0..3, 4..7).
Q3_HD uint32_t mma_a_mins_k16(const uint32_t (&s)[4], int t) {
    return (t & 3) == 0 ? s[2] : (t & 3) == 1 ? s[3] : 0u;  // selects, not a dynamic index
}
// part 0: lo bytes, part 1: hi bytes of bs_{4t+e}. The bsums are 4-byte aligned (block + 260).
Q3_HD uint32_t mma_b_bsum_k16(const block_q8k* ab, int t, int part) {
    if ((t & 3) >= 2) return 0u;
    uint32_t r = 0;
    for (int e = 0; e < 4; ++e) {
        const int j = 4 * (t & 3) + e;
        const uint32_t w = mma_ld4(reinterpret_cast<const uint8_t*>(ab->bsums) + 4 * j);
        const int bs = (int)(int16_t)(uint16_t)(w & 0xffffu) + (int)(int16_t)(uint16_t)(w >> 16);
        const int v = part ? (bs >> 7) : (bs & 127);
        r |= ((uint32_t)v & 0xffu) << (8 * e);
    }
    return r;
}

// Both parts at once (lo: part 0, hi: part 1 of mma_b_bsum_k16), one read of the bsums.
Q3_HD void mma_b_bsum_k16_pair(const block_q8k* ab, int t, uint32_t& lo, uint32_t& hi) {
    lo = 0u;
    hi = 0u;
    if ((t & 3) >= 2) return;
    for (int e = 0; e < 4; ++e) {
        const int j = 4 * (t & 3) + e;
        const uint32_t w = mma_ld4(reinterpret_cast<const uint8_t*>(ab->bsums) + 4 * j);
        const int bs = (int)(int16_t)(uint16_t)(w & 0xffffu) + (int)(int16_t)(uint16_t)(w >> 16);
        lo |= ((uint32_t)(bs & 127) & 0xffu) << (8 * e);
        hi |= ((uint32_t)(bs >> 7) & 0xffu) << (8 * e);
    }
}

// ---- Q6_K: sum_j sc_j * bs_j over the 16 sub-blocks on the tensor cores (bs_j = bsums[j], |bs_j|
// <= 16 * 127, sc_j the signed scales) ------------------------------------------------------------
// One m16n8k16 pair per block: A holds sc_j at k = j (mma_ld4_a2(wb + 192 + 4t): k16 lane t holds
// k = 4t .. 4t+3), B holds bs_j split as 128 hi_j + lo_j (lo_j = bs_j & 127, hi_j = bs_j >> 7 in
// -16..15, both int8): the sum is D(A, B_lo) + 128 D(A, B_hi), exact.
Q3_HD void mma_b_bsum16_k16_pair(const block_q8k* ab, int t, uint32_t& lo, uint32_t& hi) {
    lo = 0u;
    hi = 0u;
    for (int e = 0; e < 4; ++e) {
        const int bs = ab->bsums[mma_k16_k(t, e)];
        lo |= ((uint32_t)(bs & 127) & 0xffu) << (8 * e);
        hi |= ((uint32_t)(bs >> 7) & 0xffu) << (8 * e);
    }
}

// ---- 16-byte staging windows (matvec-mma.cu) -------------------------------------------------
// n bytes at address addr are copied to shared memory as the 16-byte chunks c = 0, 1, ... that
// start at mma_window_base(addr); the data lands at offset mma_window_off(addr) of its slot, so
// it keeps its address modulo 16. Chunk c holds mma_window_chunk_bytes bytes of the data run
// (<= 0: the chunk is past the end and is not copied; the last chunk copies no byte past it).
Q3_HD uintptr_t mma_window_base(uintptr_t addr) { return addr & ~(uintptr_t)15; }
Q3_HD int mma_window_off(uintptr_t addr) { return (int)(addr & 15); }
Q3_HD int mma_window_chunk_bytes(uintptr_t addr, int n, int c) {
    const int rem = mma_window_off(addr) + n - 16 * c;
    return rem < 16 ? rem : 16;
}

// ---- the canonical row tree, streamed ---------------------------------------------------------
// canon_tree32(p) equals the balanced binary tree over the leaves x_i = p[bitrev5(i)]: after
// its first level q[l] = p[l] + p[l + 16] (l < 16), and bitrev5(l) = 2 bitrev4(l), bitrev5(l + 16)
// = 2 bitrev4(l) + 1, so q[l] = x_2m + x_2m+1 with m = bitrev4(l) (left operand first), and the
// remaining levels are canon_tree16 over q — by induction the balanced tree over x in order.
// A binary counter that pushes x_0 .. x_31 and merges older + newer computes that tree.
Q3_HD int canon_leaf_lane(int i) {  // bitrev5(i)
    return ((i & 1) << 4) | ((i & 2) << 2) | (i & 4) | ((i & 8) >> 2) | ((i & 16) >> 4);
}
// Push leaf i (0..31) with value v; stk[k] holds the finished subtree of 2^k leaves while bit k
// of the leaf count is set. The return value after i == 31 is canon_tree32 of the 32 lanes.
Q3_HD float canon_tree_push(float (&stk)[5], int i, float v) {
    float carry = v;
    bool done = false;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int k = 0; k < 5; ++k) {
        if (!done) {
            if ((i >> k) & 1) {
                carry = stk[k] + carry;
            } else {
                stk[k] = carry;
                done = true;
            }
        }
    }
    return carry;
}

// ---- the canonical row tree over the first 2^D lanes (matvec-mma-wide.cu) ---------------------
// When every block index is below P = 2^D (nb <= P), lanes l >= P of canon_tree32 are +0.0f, and
// so are lanes nb <= l < P. A lane partial is never -0.0f ((+0.0f + c) is +0.0f for c = -0.0f),
// nor is any sum of such values (x + y is -0.0f in round-to-nearest only when both are), so
// x + 0.0f == x bit for bit (NaN stays NaN, its payload being unspecified). In the streamed tree
// (canon_leaf_lane), leaf i holds lane bitrev5(i), which is < P exactly when i = 2^(5-D) m; each
// aligned run of 2^(5-D) leaves then sums one lane with zeros (= that lane), and the top D levels
// are the balanced tree over leaves m = 0 .. P-1 holding lane canon_leaf_lane_d(D, m) (zeros for
// lanes >= nb, which are pushed, so the tree's shape stays). For D = 5 it is canon_tree_push.
Q3_HD int canon_leaf_lane_d(int d, int m) {  // bitrev_d(m), m < 2^d
    return canon_leaf_lane(m << (5 - d));
}
// Tree depth for nb blocks: 3 (nb <= 8), 4 (nb <= 16), else 5 (lanes then take several blocks).
Q3_HD int canon_tree_depth(int64_t nb) { return nb <= 8 ? 3 : nb <= 16 ? 4 : 5; }
// Trailing one bits of m (the number of merges canon_tree_push performs for leaf m).
Q3_HD int canon_push_merges(int m) {
    int k = 0;
    while ((m >> k) & 1) ++k;
    return k;
}

// Prefill matvec on int8 tensor cores (matvec-mma.cu). Returns false (launching nothing) when
// the case is not covered — one token, ids without a slot grouping, or an unsupported type — and
// the caller then uses the dp4a tiled kernel. Arguments as matvec_q8k (validated by the caller).
// Which kernel: the wide one (matvec-mma-wide.cu, default) or the 16-slot one below; the choice
// is matvec_mma_select's (cuda-ops.h).
bool matvec_q8k_mma(const MatvecArgs& p, const block_q8k* a, void* stream);
// The wide-tile kernel (matvec-mma-wide.cu), same contract.
bool matvec_q8k_mma_wide(const MatvecArgs& p, const block_q8k* a, void* stream);

}  // namespace qwen3moe::cuda
