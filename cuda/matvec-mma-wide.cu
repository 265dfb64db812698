// matvec-mma-wide.cu — the prefill Q8K matvec on int8 tensor cores with wide tiles: bit for bit
// the canonical dot of quant/dot-canon.h, the same bits as matvec-mma.cu and the dp4a kernels.
//
// Why (bench/NOTES.md, session 2): the 16-slot kernel of matvec-mma.cu staged each 256-value block
// for 64 rows x 16 slots (2 n8 tiles per warp), so every copy and barrier served little work and
// the block waited on memory at every step. Here a block of 8 warps owns a tile of
// kRows = 32 WM rows x kSlots = 16 (8 / WM) slots (WM = 4: 128 x 32 for grouped expert units of
// kWideSlots = 32, moe_group's wide work list; WM = 2: 64 x 64 for dense launches), and each warp
// a 32 x 16 sub-tile (two m16 tiles sharing the B fragments, two n8 tiles sharing the A ones).
//  * Staging: 3-stage cp.async ring, one __syncthreads per 256-value block. Weights are copied as
//    16-byte windows (mma_window_*: the data keeps its address mod 16, so the 2- and 4-byte loads
//    of the decoders stay aligned; Q4_K / Q5_K rows, 16-byte aligned, need no window), and so are
//    activation blocks (292 bytes, 4-byte aligned: offset 0, 4, 8 or 12 in slots of 304 bytes),
//    word by word when the activation array itself is not 16-byte aligned. Each thread owns one
//    weight row's and one slot's chunks for the whole unit. Row strides are odd multiples of 16 bytes (4 words mod 32 banks
//    apart), and the fragments are read in natural order (lane t: bytes 16h + 4t), so the 4-byte
//    fragment loads of a warp hit 32 different banks (except where a window offset shifts a row).
//  * Per block and 16 x 8 tile the integers are those of matvec-mma.cu (one m16n8k32 per Q4_K /
//    Q5_K sub-block, isum += sc_j d_j; msum from one m16n8k16 pair over the bsums; Q6_K one
//    m16n8k16 per sub-block, here on the unsigned stored values with the - 32 folded into one
//    k16 pair over the bsums; Q8_0 / Q4_0 one m16n8k32 per weight block), then the dot-canon.h
//    expression (canon_block_q4k / _q6k / the canon_block_q8_0 fold), -fmad=false as every TU.
//  * Row sum: blocks are visited leaf by leaf of the canonical tree (leaf m of the depth-D tree
//    holds lane canon_leaf_lane_d(D, m), D = canon_tree_depth(nb)); a lane's blocks are summed
//    from +0.0f in ascending b, then pushed into a D-deep stack (merges = trailing ones of m, as
//    canon_tree_push); lanes without a block (nb <= lane < 2^D) push +0.0f. The proof that this
//    equals canon_tree32 over all 32 lanes is in matvec-mma.cuh (canon_leaf_lane_d). D is a
//    template parameter so the stack lives in D registers per output (3 for n <= 2048).
// Slots past the unit's count read the activation of its first slot (copies, up to whole warp
// sub-tiles of 16) and are not written; warps whose 16 slots all lie past it skip the arithmetic; rows past n_rows read the
// last row and are not written; a unit with an invalid matrix id writes NaN rows.
#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/matvec-mma.cuh"
#include "cuda/matvec-q8k.cuh"
#include "cuda/matvec-tiled.cuh"
#include "quant/dot-canon.h"

namespace qwen3moe::cuda {

namespace {
#ifndef Q3_WIDE_MT
#define Q3_WIDE_MT 2
#endif
constexpr int kMT = Q3_WIDE_MT, kNT = 2;  // m16 and n8 tiles per warp (16 kMT rows x 16 slots)
constexpr int kWarps = 16 / kMT;          // warps per block: the block tiles stay 128 x 32 / 64 x 64
constexpr int kThreads = kWarps * kWarp;
constexpr int kWarpRows = 16 * kMT;       // rows per warp tile
constexpr int kWmGrouped = kWarps / 2;    // warps along the rows: grouped expert units (128 x 32)
constexpr int kWmDense = kWarps / 4;      // dense launches (64 x 64)
constexpr int kStages = 3;                // cp.async ring
constexpr int kActWords = (int)sizeof(block_q8k) / 4;  // 73: d, qs, bsums
constexpr int kActSlot = 304;             // shared bytes per slot (76 words: 12 mod 32 banks)
constexpr int kActChunks = kActSlot / 16; // 16-byte window chunks of one activation block
static_assert(sizeof(block_q8k) % 16 == 4, "block b of a row sits at offset 4 b mod 16 past block 0");
static_assert(sizeof(block_q8k) + 12 <= kActSlot, "a block at window offset 12 fits its slot");
static_assert(kWideSlots == 16 * (kWarps / kWmGrouped), "grouped units fill the 128 x 32 tile");

template <uint32_t T, int WM> struct Tile {
    static constexpr int kRows = kWarpRows * WM;
    static constexpr int kSlots = 16 * (kWarps / WM);
    static constexpr int kW = Q8KBlock<T>::kBytes;              // weight bytes per row and block
    // Q4_K / Q5_K blocks (144 / 176 bytes) of 16-byte aligned matrices (matvec_q8k requires it)
    // all start on the 16-byte grid: no window offset, kW / 16 chunks per row.
    static constexpr bool kAligned = T == GGML_TYPE_Q4_K || T == GGML_TYPE_Q5_K;
    static constexpr int kWChunks = kAligned ? kW / 16 : ((kW + 30) / 16) | 1;  // odd: rows 4 words apart mod 32
    static_assert(!kAligned || (kW % 16 == 0 && (kW / 16) % 2 == 1), "aligned rows are odd multiples of 16 bytes");
    static constexpr int kWSlot = 16 * kWChunks;
    static constexpr int kWBytes = kRows * kWSlot;
    static constexpr int kBytes = kWBytes + kSlots * kActSlot;  // one stage
};

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
__device__ __forceinline__ void mma_k16_u8(int (&d)[4], int a0, int a1, int b0) {  // A unsigned, B signed
    asm("mma.sync.aligned.m16n8k16.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a0), "r"(a1), "r"(b0));
}
__device__ __forceinline__ uint16_t ld_u16(const uint8_t* p) { return *reinterpret_cast<const uint16_t*>(p); }
__device__ __forceinline__ int byte_of(uint32_t w, int j) { return (int)__byte_perm(w, 0u, 0x4440u | (unsigned)j); }
__device__ __forceinline__ int sbyte_of(uint32_t w, int j) { return (int)(int8_t)(uint8_t)(w >> (8 * j)); }

__device__ __forceinline__ void cp_async16(void* dst, const void* src, int src_bytes) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async4(void* dst, const void* src) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
__device__ __forceinline__ void stage_chunk(uint8_t* dst, const uint8_t* src, int n, int c) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(src);
    const int bytes = mma_window_chunk_bytes(addr, n, c);
    if (bytes > 0) cp_async16(dst + 16 * c, reinterpret_cast<const void*>(mma_window_base(addr) + 16 * c), bytes);
}

// c[mt][nt][r] = c_b of C register r of tile (mt, nt) for the staged block. w[mt][h]: the weight
// block of row g + 8h of m-tile mt; bact[nt]: the activation block of B column g of n-tile nt;
// cact[nt][e]: that of C column 2t + e. All in shared memory.
template <uint32_t T> struct WideBlock;

template <uint32_t T> struct WideBlockK4 {
    __device__ __forceinline__ static void run(const uint8_t* const (&w)[kMT][2], const block_q8k* const (&bact)[kNT],
                                               const block_q8k* const (&cact)[kNT][2], int t,
                                               float (&c)[kMT][kNT][4]) {
        uint32_t s[kMT][2][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int h = 0; h < 2; ++h)
                k4_unpack_scale_words(mma_ld4(w[mt][h] + 4), mma_ld4(w[mt][h] + 8), mma_ld4(w[mt][h] + 12), s[mt][h]);
        int isum[kMT][kNT][4] = {};
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            int b[kNT][2];
#pragma unroll
            for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
                for (int h = 0; h < 2; ++h) b[nt][h] = (int)mma_b_natural(bact[nt], t, j, h);
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) {
                int q[4];
#pragma unroll
                for (int r = 0; r < 4; ++r)  // A register r: row g + 8 (r & 1), half r >> 1
                    q[r] = (int)(T == GGML_TYPE_Q4_K ? mma_a_q4k_nat(w[mt][r & 1], t, j, r >> 1)
                                                     : mma_a_q5k_nat(w[mt][r & 1], t, j, r >> 1));
                const int sc0 = byte_of(s[mt][0][j >> 2], j & 3), sc1 = byte_of(s[mt][1][j >> 2], j & 3);
#pragma unroll
                for (int nt = 0; nt < kNT; ++nt) {
                    int d[4] = {0, 0, 0, 0};
                    mma_k32(d, q, b[nt][0], b[nt][1]);
                    isum[mt][nt][0] += sc0 * d[0];  // C registers 0, 1: row g; 2, 3: row g + 8
                    isum[mt][nt][1] += sc0 * d[1];
                    isum[mt][nt][2] += sc1 * d[2];
                    isum[mt][nt][3] += sc1 * d[3];
                }
            }
        }
        float da[kNT][2];
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
            for (int e = 0; e < 2; ++e) da[nt][e] = cact[nt][e]->d;
        float dd[kMT][2], dm[kMT][2];  // the rows' f16 d, dmin
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                dd[mt][h] = f16_to_f32(ld_u16(w[mt][h]));
                dm[mt][h] = f16_to_f32(ld_u16(w[mt][h] + 2));
            }
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
            uint32_t blo, bhi;
            mma_b_bsum_k16_pair(bact[nt], t, blo, bhi);
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) {
                const int ma = (int)mma_a_mins_k16(s[mt][0], t), mb = (int)mma_a_mins_k16(s[mt][1], t);
                int ml[4] = {0, 0, 0, 0}, mh[4] = {0, 0, 0, 0};
                mma_k16(ml, ma, mb, (int)blo);
                mma_k16(mh, ma, mb, (int)bhi);
#pragma unroll
                for (int r = 0; r < 4; ++r)
                    c[mt][nt][r] = canon_block_q4k(da[nt][r & 1], dd[mt][r >> 1], dm[mt][r >> 1], isum[mt][nt][r],
                                                   ml[r] + 128 * mh[r]);
            }
        }
    }
};
template <> struct WideBlock<GGML_TYPE_Q4_K> : WideBlockK4<GGML_TYPE_Q4_K> {};
template <> struct WideBlock<GGML_TYPE_Q5_K> : WideBlockK4<GGML_TYPE_Q5_K> {};

// Q6_K: blocks are 2-byte aligned (scales read as 16-bit pairs). The weights enter the tensor cores
// as their stored 0..63 (mma_a_q6k_u, unsigned A), and the - 32 comes back once per block: isum =
// sum_j sc_j D_u,j - 32 sum_j sc_j bs_j (mma_b_bsum16_k16_pair), the same integer.
template <> struct WideBlock<GGML_TYPE_Q6_K> {
    __device__ __forceinline__ static void run(const uint8_t* const (&w)[kMT][2], const block_q8k* const (&bact)[kNT],
                                               const block_q8k* const (&cact)[kNT][2], int t,
                                               float (&c)[kMT][kNT][4]) {
        int isum[kMT][kNT][4] = {};
        uint32_t scw[kMT][2] = {};
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            int b[kNT];
#pragma unroll
            for (int nt = 0; nt < kNT; ++nt) b[nt] = (int)mma_b_k16(bact[nt], t, j);
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) {
                if ((j & 3) == 0) {
                    scw[mt][0] = mma_ld4_a2(w[mt][0] + 192 + j);
                    scw[mt][1] = mma_ld4_a2(w[mt][1] + 192 + j);
                }
                const int a0 = (int)mma_a_q6k_u(w[mt][0], t, j), a1 = (int)mma_a_q6k_u(w[mt][1], t, j);
                const int sc0 = sbyte_of(scw[mt][0], j & 3), sc1 = sbyte_of(scw[mt][1], j & 3);
#pragma unroll
                for (int nt = 0; nt < kNT; ++nt) {
                    int d[4] = {0, 0, 0, 0};
                    mma_k16_u8(d, a0, a1, b[nt]);
                    isum[mt][nt][0] += sc0 * d[0];
                    isum[mt][nt][1] += sc0 * d[1];
                    isum[mt][nt][2] += sc1 * d[2];
                    isum[mt][nt][3] += sc1 * d[3];
                }
            }
        }
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
            uint32_t blo, bhi;
            mma_b_bsum16_k16_pair(bact[nt], t, blo, bhi);
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) {
                const int sa = (int)mma_ld4_a2(w[mt][0] + 192 + mma_k16_k(t, 0));
                const int sb = (int)mma_ld4_a2(w[mt][1] + 192 + mma_k16_k(t, 0));
                int ml[4] = {0, 0, 0, 0}, mh[4] = {0, 0, 0, 0};
                mma_k16(ml, sa, sb, (int)blo);
                mma_k16(mh, sa, sb, (int)bhi);
#pragma unroll
                for (int r = 0; r < 4; ++r) isum[mt][nt][r] -= 32 * (ml[r] + 128 * mh[r]);
            }
        }
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
            const float d0 = f16_to_f32(ld_u16(w[mt][0] + 208)), d1 = f16_to_f32(ld_u16(w[mt][1] + 208));
#pragma unroll
            for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
                for (int r = 0; r < 4; ++r)
                    c[mt][nt][r] = canon_block_q6k(cact[nt][r & 1]->d, r < 2 ? d0 : d1, isum[mt][nt][r]);
        }
    }
};

// Q8_0 / Q4_0: inner = canon_fma(d_k, isum_k, inner) in ascending k from +0.0f, c_b = da * inner.
template <uint32_t T> struct WideBlockQ0 {
    static constexpr int kWb = T == GGML_TYPE_Q8_0 ? (int)sizeof(block_q8_0) : (int)sizeof(block_q4_0);
    __device__ __forceinline__ static void run(const uint8_t* const (&w)[kMT][2], const block_q8k* const (&bact)[kNT],
                                               const block_q8k* const (&cact)[kNT][2], int t,
                                               float (&c)[kMT][kNT][4]) {
        float inner[kMT][kNT][4];
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
                for (int r = 0; r < 4; ++r) inner[mt][nt][r] = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            int b[kNT][2];
#pragma unroll
            for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
                for (int h = 0; h < 2; ++h) b[nt][h] = (int)mma_b_natural(bact[nt], t, k, h);
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt) {
                int q[4];
#pragma unroll
                for (int r = 0; r < 4; ++r)
                    q[r] = (int)(T == GGML_TYPE_Q8_0 ? mma_a_q8_0_nat(w[mt][r & 1], t, k, r >> 1)
                                                     : mma_a_q4_0(w[mt][r & 1], t, k, r >> 1));
                const float dk0 = f16_to_f32(ld_u16(w[mt][0] + kWb * k));
                const float dk1 = f16_to_f32(ld_u16(w[mt][1] + kWb * k));
#pragma unroll
                for (int nt = 0; nt < kNT; ++nt) {
                    int d[4] = {0, 0, 0, 0};
                    mma_k32(d, q, b[nt][0], b[nt][1]);
#pragma unroll
                    for (int r = 0; r < 4; ++r)
                        inner[mt][nt][r] = canon_fma(r < 2 ? dk0 : dk1, (float)d[r], inner[mt][nt][r]);
                }
            }
        }
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
                for (int r = 0; r < 4; ++r) c[mt][nt][r] = cact[nt][r & 1]->d * inner[mt][nt][r];
    }
};
template <> struct WideBlock<GGML_TYPE_Q8_0> : WideBlockQ0<GGML_TYPE_Q8_0> {};
template <> struct WideBlock<GGML_TYPE_Q4_0> : WideBlockQ0<GGML_TYPE_Q4_0> {};

// ---- the streamed tree: push leaf m (K = trailing ones of m merges), older + newer ------------
constexpr int kOut = kMT * kNT * 4;  // outputs per lane
template <int K, int D> __device__ __forceinline__ void push_k(float (&stk)[D][kOut], float (&v)[kOut]) {
#pragma unroll
    for (int k = 0; k < K; ++k)
#pragma unroll
        for (int o = 0; o < kOut; ++o) v[o] = stk[k][o] + v[o];
    if constexpr (K < D) {
#pragma unroll
        for (int o = 0; o < kOut; ++o) stk[K][o] = v[o];
    }
}
// m is block-uniform, so the switch is a uniform branch. After leaf 2^D - 1, v is the row value.
template <int D> __device__ __forceinline__ void tree_push(float (&stk)[D][kOut], int m, float (&v)[kOut]) {
    switch (canon_push_merges(m)) {
        case 0: push_k<0, D>(stk, v); break;
        case 1: push_k<1, D>(stk, v); break;
        case 2: push_k<2, D>(stk, v); break;
        case 3: push_k<(3 <= D ? 3 : D), D>(stk, v); break;
        case 4: push_k<(4 <= D ? 4 : D), D>(stk, v); break;
        default: push_k<D, D>(stk, v); break;
    }
}

// Blocks in visiting order: leaf m (lane canon_leaf_lane_d(D, m)), the lane's blocks ascending.
template <int D> struct Visit {
    int m = 0;      // leaf; 2^D when done
    int64_t b = 0;  // block
    __device__ __forceinline__ void advance(int64_t nb) {
        b += kCanonLanes;
        while (b >= nb) {
            if (++m >= (1 << D)) return;
            b = canon_leaf_lane_d(D, m);
        }
    }
};

template <uint32_t T, int WM, int D>
__global__ void __launch_bounds__(kThreads, 1)
    matvec_mma_wide_kernel(const uint8_t* __restrict__ w, int64_t n_rows, int64_t nb, int64_t n_mat,
                           int64_t n_slots, int n_used, bool act_per_slot, SlotGroups g, int64_t n_units,
                           const block_q8k* __restrict__ a, bool a16, float* __restrict__ out) {
    using S = Tile<T, WM>;
    constexpr int P = 1 << D;
    extern __shared__ __align__(16) uint8_t smem[];
    __shared__ int64_t s_act[S::kSlots];  // activation row of each tile slot (slot 0's past cnt)
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int t = lane & 3;
    const int wm = warp % WM, wn = warp / WM;
    const int64_t blk_row0 = (int64_t)blockIdx.x * S::kRows;
    const int64_t row_bytes = nb * S::kW;
    const uint8_t* abytes = reinterpret_cast<const uint8_t*>(a);
    int lrow[kMT][2];  // tile-local rows of the lane: m-tile mt, C/A row g + 8h
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) lrow[mt][h] = kWarpRows * wm + 16 * mt + mma_c_row(lane, 2 * h);
    for (int64_t u = blockIdx.y; u < n_units; u += gridDim.y) {
        int64_t start, cnt, mat = 0;
        if (g.n_work) {
            if (u >= *g.n_work_wide) break;  // block-uniform; later units are empty too
            mat = g.work_wide[3 * u];
            start = g.work_wide[3 * u + 1];
            cnt = g.work_wide[3 * u + 2];
        } else {
            start = u * S::kSlots;
            cnt = n_slots - start < S::kSlots ? n_slots - start : S::kSlots;
        }
        auto slot_at = [&](int64_t i) -> int64_t { return g.n_work ? (int64_t)g.perm[start + i] : start + i; };
        if (mat < 0 || mat >= n_mat) {  // block-uniform: invalid expert id, NaN rows
            for (int64_t i = threadIdx.x; i < (int64_t)S::kRows * cnt; i += kThreads) {
                const int64_t row = blk_row0 + i % S::kRows;
                if (row < n_rows) out[slot_at(i / S::kRows) * n_rows + row] = __int_as_float(0x7fc00000);
            }
            continue;
        }
        __syncthreads();  // the previous unit's readers of s_act and the stages are done
        if (threadIdx.x < S::kSlots) {
            const int64_t s = slot_at(threadIdx.x < cnt ? threadIdx.x : 0);
            s_act[threadIdx.x] = act_per_slot ? s : s / n_used;
        }
        __syncthreads();
        const int64_t cnt16 = (cnt + 15) & ~(int64_t)15;  // whole warp sub-tiles
        const int n_copy = (int)(cnt16 < S::kSlots ? cnt16 : S::kSlots);
        const bool active = 16 * wn < cnt;  // warp-uniform: the warp's 16 slots hold a real one
        const uint8_t* wmat = w + mat * n_rows * row_bytes;
        // Staging roles, fixed for the unit: kTpr threads per weight row (chunks q, q + kTpr, ...
        // of its 16-byte window), kTps threads per activation slot (its kActChunks window chunks,
        // or its words when `a` is not 16-byte aligned). Each keeps one source pointer, so a step
        // adds b times the block size and issues its copies.
        constexpr int kTpr = kThreads / S::kRows, kWPer = (S::kWChunks + kTpr - 1) / kTpr;
        constexpr int kTps = kThreads / S::kSlots, kAPer = (kActChunks + kTps - 1) / kTps;
        const int st_row = threadIdx.x / kTpr, st_wq = threadIdx.x % kTpr;
        const int st_slot = threadIdx.x / kTps, st_aq = threadIdx.x % kTps;
        const uint8_t* st_w =
            wmat + (blk_row0 + st_row < n_rows ? blk_row0 + st_row : n_rows - 1) * row_bytes;
        const bool st_acopy = st_slot < n_copy;
        const uint8_t* st_a = abytes + s_act[st_slot] * nb * (int64_t)sizeof(block_q8k);
        auto issue = [&](int64_t b, int st) {
            uint8_t* sw = smem + st * S::kBytes;
            uint8_t* sa = sw + S::kWBytes;
            {
                const uint8_t* src = st_w + b * S::kW;
                uint8_t* dst = sw + st_row * S::kWSlot;
#pragma unroll
                for (int k = 0; k < kWPer; ++k) {
                    const int c = st_wq + kTpr * k;
                    if constexpr (S::kAligned) {
                        if (c < S::kWChunks) cp_async16(dst + 16 * c, src + 16 * c, 16);
                    } else {
                        if (c < S::kWChunks) stage_chunk(dst, src, S::kW, c);
                    }
                }
            }
            if (st_acopy) {
                const uint8_t* src = st_a + b * (int64_t)sizeof(block_q8k);
                uint8_t* dst = sa + st_slot * kActSlot;
                if (a16) {  // kernel-uniform
#pragma unroll
                    for (int k = 0; k < kAPer; ++k) {
                        const int c = st_aq + kTps * k;
                        if (c < kActChunks) stage_chunk(dst, src, (int)sizeof(block_q8k), c);
                    }
                } else {  // the words, at the same offset mod 16 as the 16-byte path puts them
                    dst += mma_window_off(reinterpret_cast<uintptr_t>(src));
                    for (int wd = st_aq; wd < kActWords; wd += kTps) cp_async4(dst + 4 * wd, src + 4 * wd);
                }
            }
        };
        // The lane's activation columns (B column g of each n-tile, C columns 2t + e): their
        // window offsets at block 0; block b adds 4 b (sizeof(block_q8k) = 4 mod 16).
        int boff[kNT], coff[kNT][2];
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
            const int n0 = 16 * wn + 8 * nt;
            boff[nt] = mma_window_off(reinterpret_cast<uintptr_t>(abytes + s_act[n0 + mma_b_col(lane)] * nb *
                                                                     (int64_t)sizeof(block_q8k)));
#pragma unroll
            for (int e = 0; e < 2; ++e)
                coff[nt][e] = mma_window_off(reinterpret_cast<uintptr_t>(
                    abytes + s_act[n0 + mma_c_col(lane, e)] * nb * (int64_t)sizeof(block_q8k)));
        }
        int woff[kMT][2];  // window offsets of the lane's rows at block 0 (block b: + b kW, mod 16)
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int64_t row = blk_row0 + lrow[mt][h] < n_rows ? blk_row0 + lrow[mt][h] : n_rows - 1;
                woff[mt][h] = mma_window_off(reinterpret_cast<uintptr_t>(wmat + row * row_bytes));
            }
        float stk[D][kOut], res[kOut], acc[kOut];
#pragma unroll
        for (int o = 0; o < kOut; ++o) {
            res[o] = 0.0f;
            acc[o] = 0.0f;
#pragma unroll
            for (int k = 0; k < D; ++k) stk[k][o] = 0.0f;
        }
        Visit<D> pv, cv;  // prefetch and compute positions
#pragma unroll
        for (int s = 0; s < kStages - 1; ++s) {
            if (pv.m < P) {
                issue(pv.b, s);
                pv.advance(nb);
            }
            cp_async_commit();
        }
        int st = 0;
#pragma unroll 1
        for (int64_t step = 0; step < nb; ++step) {
            cp_async_wait<kStages - 2>();
            __syncthreads();  // stage st complete for all threads; stage st - 1 no longer read
            {
                const int pst = st == 0 ? kStages - 1 : st - 1;
                if (pv.m < P) {
                    issue(pv.b, pst);
                    pv.advance(nb);
                }
                cp_async_commit();  // possibly empty: keeps the group count uniform
            }
            const int m = cv.m;
            const int64_t b = cv.b;
            cv.advance(nb);
            if (active) {
                const uint8_t* sw = smem + st * S::kBytes;
                const uint8_t* sa = sw + S::kWBytes;
                const uint8_t* wp[kMT][2];
#pragma unroll
                for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
                    for (int h = 0; h < 2; ++h)
                        wp[mt][h] = sw + lrow[mt][h] * S::kWSlot +
                                    (S::kAligned ? 0 : mma_window_off(woff[mt][h] + b * S::kW));
                const block_q8k* bact[kNT];
                const block_q8k* cact[kNT][2];
#pragma unroll
                for (int nt = 0; nt < kNT; ++nt) {
                    const int n0 = 16 * wn + 8 * nt;
                    bact[nt] = reinterpret_cast<const block_q8k*>(sa + (n0 + mma_b_col(lane)) * kActSlot +
                                                                  mma_window_off(boff[nt] + 4 * b));
#pragma unroll
                    for (int e = 0; e < 2; ++e)
                        cact[nt][e] = reinterpret_cast<const block_q8k*>(
                            sa + (n0 + mma_c_col(lane, e)) * kActSlot + mma_window_off(coff[nt][e] + 4 * b));
                }
                float c[kMT][kNT][4];
                WideBlock<T>::run(wp, bact, cact, t, c);
#pragma unroll
                for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
                    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
                        for (int r = 0; r < 4; ++r) {
                            float& x = acc[(mt * kNT + nt) * 4 + r];
                            x = x + c[mt][nt][r];  // lane partial: +0.0f + c_l (+ c_{l+32} ...)
                        }
                if (cv.m != m) {  // leaf m complete: push it, then +0.0f for lanes without a block
                    tree_push<D>(stk, m, acc);
                    if (m == P - 1) {
#pragma unroll
                        for (int o = 0; o < kOut; ++o) res[o] = acc[o];
                    }
                    const int m_end = cv.m < P ? cv.m : P;
                    for (int mm = m + 1; mm < m_end; ++mm) {
                        float z[kOut];
#pragma unroll
                        for (int o = 0; o < kOut; ++o) z[o] = 0.0f;
                        tree_push<D>(stk, mm, z);
                        if (mm == P - 1) {
#pragma unroll
                            for (int o = 0; o < kOut; ++o) res[o] = z[o];
                        }
                    }
#pragma unroll
                    for (int o = 0; o < kOut; ++o) acc[o] = 0.0f;
                }
            }
            st = st + 1 == kStages ? 0 : st + 1;
        }
        cp_async_wait<0>();  // no copy may be in flight into a stage the next unit reuses
        if (active) {
#pragma unroll
            for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
                for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
                    for (int r = 0; r < 4; ++r) {
                        const int64_t row = blk_row0 + lrow[mt][r >> 1];
                        const int ic = 16 * wn + 8 * nt + mma_c_col(lane, r);
                        if (row < n_rows && ic < cnt) out[slot_at(ic) * n_rows + row] = res[(mt * kNT + nt) * 4 + r];
                    }
        }
    }
}

template <uint32_t T, int WM, int D> void launch(const MatvecArgs& p, const block_q8k* a, cudaStream_t stream) {
    using S = Tile<T, WM>;
    const int64_t n_slots = (int64_t)p.n_tok * p.n_used;
    const bool grouped = p.groups && p.ids;
    const int64_t n_units =
        grouped ? moe_group_max_work_wide(n_slots, p.n_mat) : (n_slots + S::kSlots - 1) / S::kSlots;
    constexpr int smem = kStages * S::kBytes;
    static const bool attr = [] {  // once per instantiation
        Q3_CUDA_CHECK(cudaFuncSetAttribute(matvec_mma_wide_kernel<T, WM, D>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        return true;
    }();
    (void)attr;
    const dim3 grid(ceil_div_u(p.n_rows, S::kRows), (unsigned)std::min<int64_t>(n_units, 65535));
    matvec_mma_wide_kernel<T, WM, D><<<grid, kThreads, smem, stream>>>(
        static_cast<const uint8_t*>(p.w), p.n_rows, p.n / QK_K, p.n_mat, n_slots, p.n_used, p.act_per_slot,
        slot_groups(grouped ? p.groups : nullptr, n_slots, p.n_mat), n_units, a,
        (reinterpret_cast<uintptr_t>(a) & 15) == 0, p.out);
    Q3_CUDA_CHECK_LAUNCH();
}

template <uint32_t T> void launch_typed(const MatvecArgs& p, const block_q8k* a, cudaStream_t stream) {
    const bool grouped = p.groups && p.ids;
    const int d = canon_tree_depth(p.n / QK_K);
    if (grouped) {
        if (d == 3) return launch<T, kWmGrouped, 3>(p, a, stream);
        if (d == 4) return launch<T, kWmGrouped, 4>(p, a, stream);
        return launch<T, kWmGrouped, 5>(p, a, stream);
    }
    if (d == 3) return launch<T, kWmDense, 3>(p, a, stream);
    if (d == 4) return launch<T, kWmDense, 4>(p, a, stream);
    return launch<T, kWmDense, 5>(p, a, stream);
}
}  // namespace

bool matvec_q8k_mma_wide(const MatvecArgs& p, const block_q8k* a, void* stream) {
    if (p.n_tok <= 1) return false;        // decode keeps its own kernel
    if (p.ids && !p.groups) return false;  // units would mix matrices: dp4a tiled kernel
    if ((p.type == GGML_TYPE_Q4_K || p.type == GGML_TYPE_Q5_K) && (reinterpret_cast<uintptr_t>(p.w) & 15) != 0)
        return false;                      // Tile::kAligned (matvec_q8k rejects such weights first)
    const cudaStream_t s = to_stream(stream);
    switch (p.type) {
        case GGML_TYPE_Q4_K: launch_typed<GGML_TYPE_Q4_K>(p, a, s); return true;
        case GGML_TYPE_Q5_K: launch_typed<GGML_TYPE_Q5_K>(p, a, s); return true;
        case GGML_TYPE_Q6_K: launch_typed<GGML_TYPE_Q6_K>(p, a, s); return true;
        case GGML_TYPE_Q8_0: launch_typed<GGML_TYPE_Q8_0>(p, a, s); return true;
        case GGML_TYPE_Q4_0: launch_typed<GGML_TYPE_Q4_0>(p, a, s); return true;
        default: return false;
    }
}

}  // namespace qwen3moe::cuda
