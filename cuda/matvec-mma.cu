// matvec-mma.cu — prefill (several tokens) Q8K matvecs on int8 tensor cores, bit for bit the
// canonical dot of quant/dot-canon.h (the same bits as the dp4a kernels of matvec-q8k.cuh).
//
// Tiling: a block of kMmaWarps warps owns kMmaRows = 16 * kMmaWarps consecutive weight rows of
// one matrix (warp w: rows 16w .. 16w+15 of the tile, the mma M dimension) and one unit of up to
// kMmaSlots = 8 * kMmaNT slots that all use that matrix (the N dimension: kMmaNT tiles of 8).
// Units are the work entries of moe_group (expert slots sorted by matrix, cut into pieces of
// kTileSlots), or consecutive slots of a dense (ids-free) launch. Slots past the unit's count
// compute a copy of its first slot and are not written; rows past n_rows compute the last row
// and are not written; a unit whose matrix id is invalid writes NaN rows (as the dp4a kernels).
// The block stages, per 256-value block b, the weight blocks of its rows and the unit's activation
// blocks in shared memory with 16-byte cp.async copies (double buffered: block b+1 in flight while
// b is multiplied; the staging section below); the warps build their mma fragments from shared
// memory (index maps in matvec-mma.cuh, checked by tests_cpp/test-mma-fragments.cpp).
//
// Per 256-value block b and (row, slot) the kernel forms exactly the integers of dot-canon.h:
//  * Q4_K / Q5_K: one m16n8k32 per 32-value sub-block j gives d_j = sum_i q_i a_i (q unsigned
//    0..15 / 0..31) for the 16 x 8 tile; isum += sc_j * d_j. msum = sum_j m_j * bs_j with bs_j
//    = bsums[2j] + bsums[2j+1] (as the dp4a kernels; quantize_q8k writes bsums as the exact sums
//    of qs) from two m16n8k16 per block: A = m_j at k = j, B = bs_j split into 7-bit low and
//    signed high bytes, msum = D_lo + 128 D_hi (matvec-mma.cuh).
//  * Q6_K: one m16n8k16 per 16-value sub-block, A = stored - 32 (-32..31, the signed value),
//    isum += sc_j * d_j  (the dp4a form sc_j * (sum stored*a - 32 bsum) is the same integer).
//  * Q8_0 / Q4_0: one m16n8k32 per weight block k (A = int8 / nibble - 8) gives isum_k, folded
//    in ascending k by canon_fma(d_k, isum_k, inner) as canon_block_q8_0.
// Integer sums are exact (|sums| < 2^27, no wrap), so their order is free. The float part is the
// dot-canon.h expression itself (canon_block_q4k / _q6k / _q8_0; the TU is built -fmad=false).
// The row sum: lane l = (+0.0f + c_l) + c_{l+32} + ... in ascending b (blocks are visited lane by
// lane in bit-reversed lane order), then canon_tree_push folds the 32 lanes with exactly the adds
// of canon_tree32 (proof in matvec-mma.cuh). Hence every output equals the canonical value.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cuda/common.cuh"
#include "cuda/matvec-mma.cuh"
#include "cuda/matvec-q8k.cuh"
#include "cuda/matvec-tiled.cuh"
#include "quant/dot-canon.h"

namespace qwen3moe::cuda {

namespace {
constexpr int kMmaWarps = 4;               // warps per block (sm_90: 128 registers, 4 blocks/SM)
constexpr int kMmaRows = 16 * kMmaWarps;   // weight rows per block (16 per warp)
constexpr int kMmaNT = 2;                  // n-tiles of 8 slots per unit
constexpr int kMmaSlots = 8 * kMmaNT;      // slots per unit
static_assert(kMmaSlots == kTileSlots, "units are moe_group work entries of kTileSlots slots");

// d += a * b on the tensor cores (s8 x s8 -> s32, exact, no saturation needed: |d| < 2^27).
__device__ __forceinline__ void mma_k32(int (&d)[4], const int (&a)[4], int b0, int b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_k16(int (&d)[4], int a0, int a1, int b0) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a0), "r"(a1), "r"(b0));
}

__device__ __forceinline__ uint16_t ld_u16(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }

// Byte j (0..3) of w as an int.
__device__ __forceinline__ int byte_of(uint32_t w, int j) { return (int)((w >> (8 * j)) & 0xffu); }

// c[nt][r]: c_b of (row of C register r, slot column of register r in n-tile nt) for block b.
// wa / wb: weight block b of the lane's rows g / g + 8; bact[nt]: activation row (block 0) of the
// lane's B column in n-tile nt; cact[nt][e]: that of C column 2t + e. The fragment registers come
// from the Q3_HD decoders of matvec-mma.cuh (tested on the CPU by tests_cpp/test-mma-fragments.cpp).
template <uint32_t T> struct MmaBlock;

// Q4_K / Q5_K: isum from one k32 mma per sub-block scaled by sc_j; msum from one k16 pair over
// the activation bsums (mma_a_mins_k16 / mma_b_bsum_k16); c_b = canon_block_q4k(da, d, dmin, isum, msum).
template <uint32_t T> struct MmaBlockK4 {
    __device__ __forceinline__ static void run(const uint8_t* wa, const uint8_t* wb, const block_q8k* const* bact,
                                               const block_q8k* const (*cact)[2], int64_t b, int t,
                                               float (&c)[kMmaNT][4]) {
        uint32_t sa[4], sb[4];
        k4_unpack_scale_words(mma_ld4(wa + 4), mma_ld4(wa + 8), mma_ld4(wa + 12), sa);
        k4_unpack_scale_words(mma_ld4(wb + 4), mma_ld4(wb + 8), mma_ld4(wb + 12), sb);
        int isum[kMmaNT][4] = {}, msum[kMmaNT][4] = {};
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            int q[4];
#pragma unroll
            for (int r = 0; r < 4; ++r) {  // A register r: row g + 8 (r & 1), half r >> 1
                const uint8_t* w = (r & 1) ? wb : wa;
                q[r] = (int)(T == GGML_TYPE_Q4_K ? mma_a_q4k(w, t, j, r >> 1) : mma_a_q5k(w, t, j, r >> 1));
            }
            const int sca = byte_of(sa[j >> 2], j & 3), scb = byte_of(sb[j >> 2], j & 3);
#pragma unroll
            for (int nt = 0; nt < kMmaNT; ++nt) {
                const int b0 = (int)mma_b_packed(bact[nt] + b, t, j, 0), b1 = (int)mma_b_packed(bact[nt] + b, t, j, 1);
                int d[4] = {0, 0, 0, 0};
                mma_k32(d, q, b0, b1);
                isum[nt][0] += sca * d[0];  // C registers 0, 1: row g; 2, 3: row g + 8
                isum[nt][1] += sca * d[1];
                isum[nt][2] += scb * d[2];
                isum[nt][3] += scb * d[3];
            }
        }
        const int ma = (int)mma_a_mins_k16(sa, t), mb = (int)mma_a_mins_k16(sb, t);  // rows g, g + 8
#pragma unroll
        for (int nt = 0; nt < kMmaNT; ++nt) {
            int dh[4] = {0, 0, 0, 0};
            mma_k16(msum[nt], ma, mb, (int)mma_b_bsum_k16(bact[nt] + b, t, 0));
            mma_k16(dh, ma, mb, (int)mma_b_bsum_k16(bact[nt] + b, t, 1));
#pragma unroll
            for (int r = 0; r < 4; ++r) msum[nt][r] += 128 * dh[r];
        }
        const float d_a = canon_f16_to_f32(ld_u16(wa)), dmin_a = canon_f16_to_f32(ld_u16(wa + 2));
        const float d_b = canon_f16_to_f32(ld_u16(wb)), dmin_b = canon_f16_to_f32(ld_u16(wb + 2));
#pragma unroll
        for (int nt = 0; nt < kMmaNT; ++nt)
#pragma unroll
            for (int r = 0; r < 4; ++r)
                c[nt][r] = canon_block_q4k((cact[nt][r & 1] + b)->d, r < 2 ? d_a : d_b, r < 2 ? dmin_a : dmin_b,
                                           isum[nt][r], msum[nt][r]);
    }
};
template <> struct MmaBlock<GGML_TYPE_Q4_K> : MmaBlockK4<GGML_TYPE_Q4_K> {};
template <> struct MmaBlock<GGML_TYPE_Q5_K> : MmaBlockK4<GGML_TYPE_Q5_K> {};

// Q6_K: one k16 mma per 16-value sub-block (A = the signed value), isum += sc_j * d_j;
// c_b = canon_block_q6k(da, d, isum). Blocks are 2-byte aligned (16-bit loads).
template <> struct MmaBlock<GGML_TYPE_Q6_K> {
    __device__ __forceinline__ static void run(const uint8_t* wa, const uint8_t* wb, const block_q8k* const* bact,
                                               const block_q8k* const (*cact)[2], int64_t b, int t,
                                               float (&c)[kMmaNT][4]) {
        int isum[kMmaNT][4] = {};
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            const int a0 = (int)mma_a_q6k(wa, t, j), a1 = (int)mma_a_q6k(wb, t, j);
            const int sca = (int)(int8_t)wa[192 + j], scb = (int)(int8_t)wb[192 + j];
#pragma unroll
            for (int nt = 0; nt < kMmaNT; ++nt) {
                int d[4] = {0, 0, 0, 0};
                mma_k16(d, a0, a1, (int)mma_b_k16(bact[nt] + b, t, j));
                isum[nt][0] += sca * d[0];
                isum[nt][1] += sca * d[1];
                isum[nt][2] += scb * d[2];
                isum[nt][3] += scb * d[3];
            }
        }
        const float d_a = canon_f16_to_f32(ld_u16(wa + 208)), d_b = canon_f16_to_f32(ld_u16(wb + 208));
#pragma unroll
        for (int nt = 0; nt < kMmaNT; ++nt)
#pragma unroll
            for (int r = 0; r < 4; ++r)
                c[nt][r] = canon_block_q6k((cact[nt][r & 1] + b)->d, r < 2 ? d_a : d_b, isum[nt][r]);
    }
};

// Q8_0 / Q4_0: one k32 mma per weight block k gives isum_k; canon_block_q8_0 folds
// inner = canon_fma(d_k, isum_k, inner) in ascending k from +0.0f, then c_b = da * inner.
template <uint32_t T> struct MmaBlockQ0 {
    static constexpr int kWb = T == GGML_TYPE_Q8_0 ? (int)sizeof(block_q8_0) : (int)sizeof(block_q4_0);
    __device__ __forceinline__ static void run(const uint8_t* wa, const uint8_t* wb, const block_q8k* const* bact,
                                               const block_q8k* const (*cact)[2], int64_t b, int t,
                                               float (&c)[kMmaNT][4]) {
        float inner[kMmaNT][4];
#pragma unroll
        for (int nt = 0; nt < kMmaNT; ++nt)
#pragma unroll
            for (int r = 0; r < 4; ++r) inner[nt][r] = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            int q[4];
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const uint8_t* w = (r & 1) ? wb : wa;
                q[r] = (int)(T == GGML_TYPE_Q8_0 ? mma_a_q8_0(w, t, k, r >> 1) : mma_a_q4_0(w, t, k, r >> 1));
            }
            const float dka = canon_f16_to_f32(ld_u16(wa + kWb * k)), dkb = canon_f16_to_f32(ld_u16(wb + kWb * k));
#pragma unroll
            for (int nt = 0; nt < kMmaNT; ++nt) {
                const block_q8k* ab = bact[nt] + b;
                const int b0 = (int)(T == GGML_TYPE_Q8_0 ? mma_b_packed(ab, t, k, 0) : mma_b_natural(ab, t, k, 0));
                const int b1 = (int)(T == GGML_TYPE_Q8_0 ? mma_b_packed(ab, t, k, 1) : mma_b_natural(ab, t, k, 1));
                int d[4] = {0, 0, 0, 0};
                mma_k32(d, q, b0, b1);
#pragma unroll
                for (int r = 0; r < 4; ++r) inner[nt][r] = canon_fma(r < 2 ? dka : dkb, (float)d[r], inner[nt][r]);
            }
        }
#pragma unroll
        for (int nt = 0; nt < kMmaNT; ++nt)
#pragma unroll
            for (int r = 0; r < 4; ++r) c[nt][r] = (cact[nt][r & 1] + b)->d * inner[nt][r];
    }
};
template <> struct MmaBlock<GGML_TYPE_Q8_0> : MmaBlockQ0<GGML_TYPE_Q8_0> {};
template <> struct MmaBlock<GGML_TYPE_Q4_0> : MmaBlockQ0<GGML_TYPE_Q4_0> {};

// ---- staging of one 256-value block in shared memory ----------------------------------------
// A stage holds, for one activation block index b, the weight block b of the block's kMmaRows
// rows and the activation block b (d, qs, bsums) of the unit's kMmaSlots slots. Each is copied as
// its 16-byte "window" (mma_window_* in matvec-mma.cuh): the aligned 16-byte chunks that cover
// its bytes, placed so that the data keeps its global address modulo 16 (the decoders' 2- and
// 4-byte alignment therefore holds in shared memory as in global memory; the tail chunk copies
// only the bytes of the block, cp.async zero-fills the rest).
constexpr int kMmaMinBlocks = 4;                        // blocks per SM (<= 128 registers)
constexpr int kMmaStages = 2;                            // cp.async double buffer
constexpr int kMmaActCopy = (int)sizeof(block_q8k);      // block_q8k bytes used: d, qs, bsums
template <uint32_t T> struct MmaStage {
    static constexpr int kW = Q8KBlock<T>::kBytes;          // weight bytes per row and block
    static constexpr int kWChunks = (kW + 30) / 16;         // most 16-byte chunks of a window
    static constexpr int kWSlot = 16 * kWChunks;            // shared bytes per weight row
    static constexpr int kAChunks = (kMmaActCopy + 30) / 16;
    static constexpr int kASlot = 16 * kAChunks;            // shared bytes per slot
    static constexpr int kBytes = kMmaRows * kWSlot + kMmaSlots * kASlot;  // bytes per stage
};

// 16-byte asynchronous copy global -> shared of src_bytes (1..16) bytes, the rest zero-filled.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait1() { asm volatile("cp.async.wait_group 1;" ::: "memory"); }

// Copy chunk c of the window of the n bytes at src into slot dst (if that chunk holds any).
__device__ __forceinline__ void stage_chunk(uint8_t* dst, const uint8_t* src, int n, int c) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(src);
    const int bytes = mma_window_chunk_bytes(addr, n, c);
    if (bytes > 0) cp_async16(dst + 16 * c, reinterpret_cast<const void*>(mma_window_base(addr) + 16 * c), bytes);
}

template <uint32_t T>
__global__ void __launch_bounds__(kMmaWarps * kWarp, kMmaMinBlocks)
    matvec_mma_kernel(const uint8_t* __restrict__ w, int64_t n_rows, int64_t nb, int64_t n_mat, int64_t n_slots,
                      int n_used, bool act_per_slot, SlotGroups g, int64_t n_units, const block_q8k* __restrict__ a,
                      float* __restrict__ out) {
    using S = MmaStage<T>;
    constexpr int64_t kBytes = Q8KBlock<T>::kBytes;
    __shared__ __align__(16) uint8_t smem[kMmaStages * S::kBytes];
    __shared__ int64_t s_act[kMmaSlots];  // activation row of each unit slot (slot 0's past cnt)
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int t = lane & 3;
    const int64_t blk_row0 = (int64_t)blockIdx.x * kMmaRows;
    const int ra = 16 * warp + mma_c_row(lane, 0), rb = 16 * warp + mma_c_row(lane, 2);  // C rows g, g + 8
    const int64_t row_a = blk_row0 + ra, row_b = blk_row0 + rb;
    const int64_t row_bytes = nb * kBytes;
    const uint8_t* abytes = reinterpret_cast<const uint8_t*>(a);
    for (int64_t u = blockIdx.y; u < n_units; u += gridDim.y) {
        int64_t start, cnt, mat = 0;
        if (g.n_work) {
            if (u >= *g.n_work) break;  // block-uniform; later units are empty too
            mat = g.work[3 * u];
            start = g.work[3 * u + 1];
            cnt = g.work[3 * u + 2];
        } else {
            start = u * kMmaSlots;
            cnt = n_slots - start < kMmaSlots ? n_slots - start : kMmaSlots;
        }
        auto slot_at = [&](int64_t i) -> int64_t { return g.n_work ? (int64_t)g.perm[start + i] : start + i; };
        float res[kMmaNT][4];
        if (mat < 0 || mat >= n_mat) {  // block-uniform
#pragma unroll
            for (int nt = 0; nt < kMmaNT; ++nt)
#pragma unroll
                for (int r = 0; r < 4; ++r) res[nt][r] = __int_as_float(0x7fc00000);  // invalid expert id
        } else {
            __syncthreads();  // the previous unit's readers of s_act and the stages are done
            if (threadIdx.x < kMmaSlots) {
                const int64_t s = slot_at(threadIdx.x < cnt ? threadIdx.x : 0);
                s_act[threadIdx.x] = act_per_slot ? s : s / n_used;
            }
            __syncthreads();
            const uint8_t* wmat = w + mat * n_rows * row_bytes;
            // Issue the copies of block b into stage st (every thread, then one commit group).
            auto issue = [&](int64_t b, int st) {
                uint8_t* sw = smem + st * S::kBytes;
                uint8_t* sa = sw + kMmaRows * S::kWSlot;
                for (int idx = threadIdx.x; idx < kMmaRows * S::kWChunks; idx += kMmaWarps * kWarp) {
                    const int r = idx / S::kWChunks, c = idx - r * S::kWChunks;
                    const int64_t row = blk_row0 + r < n_rows ? blk_row0 + r : n_rows - 1;
                    stage_chunk(sw + r * S::kWSlot, wmat + row * row_bytes + b * kBytes, (int)kBytes, c);
                }
                for (int idx = threadIdx.x; idx < kMmaSlots * S::kAChunks; idx += kMmaWarps * kWarp) {
                    const int s = idx / S::kAChunks, c = idx - s * S::kAChunks;
                    stage_chunk(sa + s * S::kASlot, abytes + (s_act[s] * nb + b) * (int64_t)sizeof(block_q8k),
                                kMmaActCopy, c);
                }
            };
            // Window offsets of the lane's rows g, g + 8 at block 0 (block b: + b * kBytes, mod 16).
            const int woa = mma_window_off(reinterpret_cast<uintptr_t>(wmat + (row_a < n_rows ? row_a : n_rows - 1) * row_bytes));
            const int wob = mma_window_off(reinterpret_cast<uintptr_t>(wmat + (row_b < n_rows ? row_b : n_rows - 1) * row_bytes));
            float stk[kMmaNT][4][5];
#pragma unroll
            for (int nt = 0; nt < kMmaNT; ++nt)
#pragma unroll
                for (int r = 0; r < 4; ++r) {
#pragma unroll
                    for (int k = 0; k < 5; ++k) stk[nt][r][k] = 0.0f;
                    res[nt][r] = 0.0f;
                }
            int st = 0;
            if (nb > 0) issue(0, 0);  // the first block visited: leaf 0 is lane 0, block 0
            cp_async_commit();
#pragma unroll 1
            for (int i = 0; i < kCanonLanes; ++i) {
                const int l = canon_leaf_lane(i);
                float p[kMmaNT][4];
#pragma unroll
                for (int nt = 0; nt < kMmaNT; ++nt)
#pragma unroll
                    for (int r = 0; r < 4; ++r) p[nt][r] = 0.0f;
                for (int64_t b = l; b < nb; b += kCanonLanes) {  // lane l's blocks, ascending
                    int64_t bn = b + kCanonLanes;                  // the next block visited
                    if (bn >= nb) {
                        bn = -1;
                        for (int i2 = i + 1; i2 < kCanonLanes; ++i2)
                            if (canon_leaf_lane(i2) < nb) {
                                bn = canon_leaf_lane(i2);
                                break;
                            }
                    }
                    if (bn >= 0) issue(bn, st ^ 1);
                    cp_async_commit();  // possibly empty: keeps "all but the newest group" uniform
                    cp_async_wait1();
                    __syncthreads();  // stage st is complete for every thread
                    const uint8_t* sw = smem + st * S::kBytes;
                    const uint8_t* sa = sw + kMmaRows * S::kWSlot;
                    auto act_in_stage = [&](int i_slot) {  // the slot's activation block in the stage
                        const uintptr_t ga = reinterpret_cast<uintptr_t>(
                            abytes + (s_act[i_slot] * nb + b) * (int64_t)sizeof(block_q8k));
                        return reinterpret_cast<const block_q8k*>(sa + i_slot * S::kASlot + mma_window_off(ga));
                    };
                    const block_q8k* bact[kMmaNT];
                    const block_q8k* cact[kMmaNT][2];
#pragma unroll
                    for (int nt = 0; nt < kMmaNT; ++nt) {
                        bact[nt] = act_in_stage(8 * nt + mma_b_col(lane));
#pragma unroll
                        for (int e = 0; e < 2; ++e) cact[nt][e] = act_in_stage(8 * nt + mma_c_col(lane, e));
                    }
                    const uint8_t* wa = sw + ra * S::kWSlot + mma_window_off(woa + b * kBytes);
                    const uint8_t* wb = sw + rb * S::kWSlot + mma_window_off(wob + b * kBytes);
                    float c[kMmaNT][4];
                    MmaBlock<T>::run(wa, wb, bact, cact, 0, t, c);
#pragma unroll
                    for (int nt = 0; nt < kMmaNT; ++nt)
#pragma unroll
                        for (int r = 0; r < 4; ++r) p[nt][r] = p[nt][r] + c[nt][r];
                    __syncthreads();  // stage st may be overwritten from the next step on
                    st ^= 1;
                }
#pragma unroll
                for (int nt = 0; nt < kMmaNT; ++nt)
#pragma unroll
                    for (int r = 0; r < 4; ++r) res[nt][r] = canon_tree_push(stk[nt][r], i, p[nt][r]);
            }
        }
#pragma unroll
        for (int nt = 0; nt < kMmaNT; ++nt)
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const int64_t row = r < 2 ? row_a : row_b;
                const int ic = 8 * nt + mma_c_col(lane, r);  // the unit slot of C register r
                if (row < n_rows && ic < cnt) out[slot_at(ic) * n_rows + row] = res[nt][r];
            }
    }
}

template <uint32_t T> void launch(const MatvecArgs& p, const block_q8k* a, cudaStream_t stream) {
    const int64_t n_slots = (int64_t)p.n_tok * p.n_used;
    const bool grouped = p.groups && p.ids;
    const int64_t n_units = grouped ? moe_group_max_work(n_slots, p.n_mat) : (n_slots + kMmaSlots - 1) / kMmaSlots;
    const dim3 grid(ceil_div_u(p.n_rows, kMmaRows), (unsigned)std::min<int64_t>(n_units, 65535));
    matvec_mma_kernel<T><<<grid, kMmaWarps * kWarp, 0, stream>>>(
        static_cast<const uint8_t*>(p.w), p.n_rows, p.n / QK_K, p.n_mat, n_slots, p.n_used, p.act_per_slot,
        slot_groups(grouped ? p.groups : nullptr, n_slots), n_units, a, p.out);
    Q3_CUDA_CHECK_LAUNCH();
}
}  // namespace

namespace {
// QWEN3MOE_CUDA_MMA=old selects this file's 16-slot kernel, anything else (or unset) the wide one.
int mma_variant_from_env() {
    const char* e = std::getenv("QWEN3MOE_CUDA_MMA");
    return e && std::strcmp(e, "old") == 0 ? kMmaOld : kMmaWide;
}
std::atomic<int> g_mma_variant{mma_variant_from_env()};  // read once, at load
}  // namespace

int matvec_mma_select(int variant) {
    if (variant != kMmaOld && variant != kMmaWide) return g_mma_variant.load();
    return g_mma_variant.exchange(variant);
}

bool matvec_q8k_mma(const MatvecArgs& p, const block_q8k* a, void* stream) {
    if (g_mma_variant.load(std::memory_order_relaxed) == kMmaWide) return matvec_q8k_mma_wide(p, a, stream);
    if (p.n_tok <= 1) return false;               // decode keeps its own kernel
    if (p.ids && !p.groups) return false;         // units would mix matrices: dp4a tiled kernel
    const cudaStream_t s = to_stream(stream);
    switch (p.type) {
        case GGML_TYPE_Q4_K: launch<GGML_TYPE_Q4_K>(p, a, s); return true;
        case GGML_TYPE_Q5_K: launch<GGML_TYPE_Q5_K>(p, a, s); return true;
        case GGML_TYPE_Q6_K: launch<GGML_TYPE_Q6_K>(p, a, s); return true;
        case GGML_TYPE_Q8_0: launch<GGML_TYPE_Q8_0>(p, a, s); return true;
        case GGML_TYPE_Q4_0: launch<GGML_TYPE_Q4_0>(p, a, s); return true;
        default: return false;
    }
}

}  // namespace qwen3moe::cuda
