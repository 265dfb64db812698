// decode-attention.cu — attention of the decode step's single token, split-K over key tiles
// with a grid that does not depend on the position (so the launch can live in a CUDA graph).
// On sm_90 one launch, dec_attn_cluster (below), runs a thread-block cluster per KV head; the
// two-launch path here serves older GPUs and long contexts:
// the grid is (n_split, n_head_kv); block (s, g) serves the G = n_head / n_head_kv query heads of
// KV head g and takes the work items s, s + n_split, ... that the token's position needs.
//
//  1. dec_attn_scores: every block normalises and rotates its G query heads (norm_rope's
//     expressions) into shared memory; the block that owns the run of the token's own key first
//     computes k head g the same way and appends K and V at pos to the cache (kv_store's values)
//     — DecFront, with the norm weights and RoPE rows loaded before the PDL wait.
//     Item = 32 keys of a tile: the keys (widened from f16 exactly as the
//     op-by-op kernels do) go to shared memory; warp h computes head h's scores, one key per
//     lane, each as the full canonical dot in one thread (32 lane partials p_l = canon_fma(q[i],
//     k[i], p_l) over i = l, l+32, ... ascending, then canon_tree32 — the bits of the warp dot)
//     times kq_scale; scores and per (head, 32 keys) maxima -> scratch.
//  2. dec_attn_values, item = (tile, 32 of the head_dim values): m = max of the maxima (a NaN
//     s_0 wins, as the CPU); e_j = canon_exp(s_j - m) and the tile's V columns in shared memory;
//     lane d of warp h accumulates z and a[d] over the tile in ascending j from +0.0f -> scratch.
//     The last block of KV head g (atomic counter) adds the tiles in ascending order from +0.0f
//     and divides: exactly attn_split_combine's expression; when the group's G * hd outputs are
//     whole 256-blocks it also writes their Q8K blocks (quantize_q8k's bits) for the o-proj.
#include <stdexcept>
#include <string>

#include <algorithm>

#include <cooperative_groups.h>
#include <cuda_fp16.h>

#include "cuda/decode-common.cuh"
#include "cuda/decode-ops.h"
#include "cuda/qk-norm-rope.cuh"

namespace qwen3moe::cuda {

namespace {
constexpr int kMaxGroup = kDecWarps;  // query heads per KV head (one warp each)
constexpr int kMaxHeadDim = 256;
constexpr int kKeys = 32;             // keys per score item (one per lane)
constexpr int kSubs = kAttnTile / kKeys;  // score items per tile

// Rows [0, n_rows) x columns [0, n_cols) of the cache block starting at element `base` (row
// stride kv_row elements) -> dst[j * ld + c] as f32 (the exact widening: hardware conversion, NaN patterns canonical). 8-element chunks
// with 16-byte loads, up to 4 chunks per thread loaded before any is converted.
// n_cols % 8 == 0; base and kv_row multiples of 8.
// kBypassL1: read with ld.global.cg (rows another block of the running kernel may have written).
template <bool F16, bool kBypassL1 = false>
__device__ __forceinline__ void stage_kv(const void* cache, int64_t base, int64_t kv_row, int n_rows, int n_cols,
                                         float* dst, int ld) {
    constexpr int kBatch = 4;
    const int cpr = n_cols / 8, n_chunks = n_rows * cpr;
    for (int c0 = 0; c0 < n_chunks; c0 += kBatch * (int)blockDim.x) {
        uint4 raw[kBatch][F16 ? 1 : 2];
#pragma unroll
        for (int b = 0; b < kBatch; ++b) {
            const int c = c0 + b * (int)blockDim.x + (int)threadIdx.x;
            const int64_t off = base + (int64_t)(c / cpr) * kv_row + (c % cpr) * 8;
            if (c < n_chunks) {
                auto ld16 = [](const void* a) {
                    const uint4* q = reinterpret_cast<const uint4*>(a);
                    return kBypassL1 ? __ldcg(q) : *q;
                };
                if constexpr (F16) {
                    raw[b][0] = ld16(static_cast<const uint16_t*>(cache) + off);
                } else {
                    raw[b][0] = ld16(static_cast<const float*>(cache) + off);
                    raw[b][1] = ld16(static_cast<const float*>(cache) + off + 4);
                }
            }
        }
#pragma unroll
        for (int b = 0; b < kBatch; ++b) {
            const int c = c0 + b * (int)blockDim.x + (int)threadIdx.x;
            if (c >= n_chunks) continue;
            float* d = dst + (c / cpr) * ld + (c % cpr) * 8;
            if constexpr (F16) {
                const uint32_t w[4] = {raw[b][0].x, raw[b][0].y, raw[b][0].z, raw[b][0].w};
#pragma unroll
                for (int u = 0; u < 4; ++u) {
                    const uint16_t h[2] = {(uint16_t)(w[u] & 0xffffu), (uint16_t)(w[u] >> 16)};
#pragma unroll
                    for (int v = 0; v < 2; ++v)
                        d[2 * u + v] = ((h[v] & 0x7c00u) == 0x7c00u && (h[v] & 0x03ffu) != 0u)
                                           ? canon_f16_to_f32(h[v])  // NaN patterns: the canonical bits
                                           : __half2float(__ushort_as_half(h[v]));
                }
            } else {
                const uint32_t w[8] = {raw[b][0].x, raw[b][0].y, raw[b][0].z, raw[b][0].w,
                                       raw[b][1].x, raw[b][1].y, raw[b][1].z, raw[b][1].w};
#pragma unroll
                for (int u = 0; u < 8; ++u) d[u] = __uint_as_float(w[u]);
            }
        }
    }
}

struct Layout {
    float* scores;  // [n_head][n_ctx]
    float* smax;    // [n_head][n_sub]: maxima of 32-key runs
    float* part;    // [n_head][n_tiles][1 + hd]
    int n_tiles;    // ceil(n_ctx / kAttnTile)
    int n_sub;      // n_tiles * kSubs
};

__device__ __forceinline__ Layout layout(const DecAttnArgs& p) {
    Layout L;
    L.n_tiles = (int)((p.n_ctx + kAttnTile - 1) / kAttnTile);
    L.n_sub = L.n_tiles * kSubs;
    L.scores = p.scratch;
    L.smax = L.scores + (int64_t)p.n_head * p.n_ctx;
    L.part = L.smax + (int64_t)p.n_head * L.n_sub;
    return L;
}

// The front of both attention kernels: per-head RMSNorm + NEOX RoPE of the token's q heads
// (one warp each) and of its k head, K and V appended at pos (norm_rope's and kv_store's
// values, through lane_norm_rope). It is on every layer's critical path, so there is no chain
// of dependent loads: preload (before pdl_wait) loads the norm weights and the RoPE rows at
// pos, which no kernel writes; run (after the wait) issues the loads of the warp's q head and,
// for the k warp, of the k head and the V row before using any of them. The k warp does its q
// head too, interleaved with the k head (with G = kDecWarps there is no idle warp); that costs
// arithmetic, not round trips.
static_assert(kMaxHeadDim <= kLaneHeadMax, "lane_norm_rope holds a head in registers");
struct DecFront {
    LaneHead wq, wk;  // attn_q_norm, attn_k_norm weights
    LaneRope rope;    // cos / sin rows at pos

    // Before pdl_wait: what run will need besides the heads (q_head: the warp runs; k_head: with
    // the k head).
    __device__ __forceinline__ void preload(const DecAttnArgs& p, int64_t pos, bool q_head, bool k_head) {
        if (q_head) {
            wq.load(p.q_norm, p.hd);
            rope.load(p.rope_cos, p.rope_sin, pos, p.hd);
        }
        if (k_head) wk.load(p.k_norm, p.hd);
    }

    // Query head h of KV head g's group -> q_out (shared memory; with `store` also q_normed,
    // q_rope); with k_head also k head g -> k_normed, k_rope and the K cache row at pos, and the
    // V row at pos. q_scratch, k_scratch: hd floats of the warp's shared memory each (used when
    // hd % 64 != 0; k_scratch only with k_head). f16: p.cache_f16, passed as the kernel's
    // template argument so that only one element type's stores are compiled.
    __device__ __forceinline__ void run(const DecAttnArgs& p, bool f16, int64_t pos, int g, int h, bool store,
                                        bool k_head, float* q_out, float* q_scratch, float* k_scratch) const {
        const int hd = p.hd;
        const int64_t qh = (int64_t)(g * (p.n_head / p.n_head_kv) + h) * hd, kh = (int64_t)g * hd;
        const int64_t row = pos * ((int64_t)p.n_head_kv * hd);  // cache row pos
        LaneHead xq, xk, xv;
        xq.load(p.q + qh, hd);
        if (k_head) {
            xk.load(p.k + kh, hd);
            xv.load(p.v + kh, hd);
        }
        NormRopeDst dq;
        dq.normed = store ? p.q_normed + qh : nullptr;
        dq.out = q_out;
        dq.out2 = store ? p.q_rope + qh : nullptr;
        dq.sh = q_scratch;
        if (k_head) {
            NormRopeDst dk;
            dk.normed = p.k_normed + kh;
            dk.out = p.k_rope + kh;
            dk.cache = p.k_cache;
            dk.cache_f16 = f16;
            dk.cache_off = row + kh;
            dk.sh = k_scratch;
            lane_norm_rope<2>({xq, xk}, {wq, wk}, rope, p.eps, hd, {dq, dk});
            xv.store_cache(p.v_cache, f16, row + kh, hd);
        } else {
            lane_norm_rope<1>({xq}, {wq}, rope, p.eps, hd, {dq});
        }
    }
};

template <bool F16>
__global__ void __launch_bounds__(kDecThreads, 1) dec_attn_scores(DecAttnArgs p) {
    __shared__ float q_sh[kMaxGroup][kMaxHeadDim];
    __shared__ float k_sh[kKeys][kMaxHeadDim + 1];  // +1: lanes reading one column hit distinct banks
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int g = blockIdx.y, G = p.n_head / p.n_head_kv, hd = p.hd;
    const Layout L = layout(p);
    const int64_t pos = p.pos[0];  // written before the graph started: may be read before the wait
    const int n_items = ((int)(pos / kKeys)) + 1;  // 32-key runs covering 0..pos
    const int64_t kv_row = (int64_t)p.n_head_kv * hd;
    // Warp `warp` < G of a block with work normalises and rotates q head g * G + warp into q_sh;
    // warp 0 of the block whose runs include the token's own key (always a block with work) also
    // does k head g and appends K and V at pos before any key is read.
    const bool q_head = (int)blockIdx.x < n_items && warp < G;
    const bool k_head = q_head && warp == 0 && (int)blockIdx.x == (int)((pos / kKeys) % gridDim.x);
    DecFront front;
    front.preload(p, pos, q_head, k_head);
    pdl_wait();
    pdl_launch_next();
    if ((int)blockIdx.x >= n_items) return;  // block-uniform
    // k_sh rows serve as the warps' scratch; block 0 of the group stores the q heads.
    if (q_head) front.run(p, F16, pos, g, warp, blockIdx.x == 0, k_head, q_sh[warp], k_sh[warp], k_sh[kMaxGroup]);
    const float kq_scale = canon_div(1.0f, canon_sqrt((float)hd));
    for (int it = blockIdx.x; it < n_items; it += gridDim.x) {
        const int64_t j0 = (int64_t)it * kKeys;
        const int len = (int)(pos + 1 - j0 < kKeys ? pos + 1 - j0 : kKeys);
        __syncthreads();  // q_sh and the cache row at pos written / k_sh free again
        stage_kv<F16>(p.k_cache, j0 * kv_row + (int64_t)g * hd, kv_row, len, hd, &k_sh[0][0], kMaxHeadDim + 1);
        __syncthreads();
        if (warp < G) {
            const int h = warp;
            float s = -__int_as_float(0x7f800000);
            if (lane < len) {
                float part[kWarp];
#pragma unroll
                for (int l = 0; l < kWarp; ++l) part[l] = 0.0f;
#pragma unroll
                for (int c = 0; c < kMaxHeadDim; c += kWarp) {  // hd % 32 == 0
                    if (c < hd) {
#pragma unroll
                        for (int l = 0; l < kWarp; ++l)
                            part[l] = canon_fma(q_sh[h][c + l], k_sh[lane][c + l], part[l]);
                    }
                }
                // canon_tree32, unrolled so the partials stay in registers.
#pragma unroll
                for (int l = 0; l < 16; ++l) part[l] = part[l] + part[l + 16];
#pragma unroll
                for (int l = 0; l < 8; ++l) part[l] = part[l] + part[l + 8];
#pragma unroll
                for (int l = 0; l < 4; ++l) part[l] = part[l] + part[l + 4];
#pragma unroll
                for (int l = 0; l < 2; ++l) part[l] = part[l] + part[l + 2];
                part[0] = part[0] + part[1];
                s = part[0] * kq_scale;
                L.scores[(int64_t)(g * G + h) * p.n_ctx + j0 + lane] = s;
            }
            const float m = warp_max(s);  // lanes past len hold -inf
            if (lane == 0) L.smax[(int64_t)(g * G + h) * L.n_sub + it] = m;
        }
    }
}

template <bool F16>
__global__ void __launch_bounds__(kDecThreads, 1) dec_attn_values(DecAttnArgs p) {
    __shared__ float e_sh[kMaxGroup][kAttnTile];
    __shared__ float v_sh[kAttnTile][kWarp];
    __shared__ float m_sh[kMaxGroup];
    __shared__ bool last_sh;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int g = blockIdx.y, G = p.n_head / p.n_head_kv, hd = p.hd;
    const Layout L = layout(p);
    pdl_wait();
    pdl_launch_next();
    const int64_t pos = p.pos[0];
    const int n_t = (int)(pos / kAttnTile) + 1;
    const int n_dc = (hd + kWarp - 1) / kWarp;  // 32-column chunks of head_dim
    const int n_items = n_t * n_dc;
    const int64_t kv_row = (int64_t)p.n_head_kv * hd;
    if ((int)blockIdx.x < n_items) {  // block-uniform
        // m per head: the maximum of the run maxima (exact in any order); a NaN s_0 wins.
        if (warp < G) {
            const int64_t row = g * G + warp;
            const int n_runs = (int)(pos / kKeys) + 1;
            float mx = -__int_as_float(0x7f800000);
            for (int i = lane; i < n_runs; i += kWarp) mx = fmaxf(mx, L.smax[row * L.n_sub + i]);
            mx = warp_max(mx);
            const float s0 = L.scores[row * p.n_ctx];
            if (lane == 0) m_sh[warp] = s0 != s0 ? s0 : mx;
        }
        for (int it = blockIdx.x; it < n_items; it += gridDim.x) {
            const int tile = it / n_dc, dc = it % n_dc;
            const int64_t t0 = (int64_t)tile * kAttnTile;
            const int len = (int)(pos + 1 - t0 < kAttnTile ? pos + 1 - t0 : kAttnTile);
            __syncthreads();  // m_sh written / e_sh, v_sh free again
            for (int i = threadIdx.x; i < G * kAttnTile; i += blockDim.x) {
                const int h = i / kAttnTile, j = i % kAttnTile;
                if (j < len) e_sh[h][j] = canon_exp(L.scores[(int64_t)(g * G + h) * p.n_ctx + t0 + j] - m_sh[h]);
            }
            stage_kv<F16>(p.v_cache, t0 * kv_row + (int64_t)g * hd + dc * kWarp, kv_row, len,
                          hd - dc * kWarp < kWarp ? hd - dc * kWarp : kWarp, &v_sh[0][0], kWarp);
            __syncthreads();
            const int d = dc * kWarp + lane;
            if (warp < G && d < hd) {
                const int h = warp;
                float z = 0.0f, a = 0.0f;
#pragma unroll 8
                for (int j = 0; j < len; ++j) {
                    const float e = e_sh[h][j];
                    z = z + e;
                    a = canon_fma(e, v_sh[j][lane], a);
                }
                float* part = L.part + ((int64_t)(g * G + h) * L.n_tiles + tile) * (int64_t)(1 + hd);
                if (dc == 0 && lane == 0) part[0] = z;
                part[1 + d] = a;
            }
        }
    }
    // The last block of KV head g combines the tiles of its heads.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_sh = atomicAdd(&p.counters[g], 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last_sh) return;
    __threadfence();
    __shared__ __align__(16) float o_sh[kMaxGroup * kMaxHeadDim];  // the group's outputs (for Q8K)
    // Each thread combines kOuts outputs at once: the loads of kBatch tiles of all of them are
    // issued together (one round trip per kBatch tiles, not one per (output, kBatch tiles)),
    // then each output adds its tiles in ascending order from +0.0f.
    constexpr int kBatch = 8, kOuts = 4;
    for (int pr0 = threadIdx.x; pr0 < G * hd; pr0 += kOuts * (int)blockDim.x) {
        const float* zrow[kOuts];  // the head's tile records: z, then a[hd]
        int prs[kOuts], dk[kOuts];
#pragma unroll
        for (int k = 0; k < kOuts; ++k) {
            const int pr = pr0 + k * (int)blockDim.x;
            prs[k] = pr;
            const int pc = pr < G * hd ? pr : pr0;  // past the end: a valid output, not stored
            zrow[k] = L.part + (int64_t)(g * G + pc / hd) * L.n_tiles * (int64_t)(1 + hd);
            dk[k] = pc % hd;
        }
        float Z[kOuts], A[kOuts];
#pragma unroll
        for (int k = 0; k < kOuts; ++k) Z[k] = 0.0f, A[k] = 0.0f;
        for (int i0 = 0; i0 < n_t; i0 += kBatch) {  // ascending tile order from +0.0f
            float zb[kOuts][kBatch], ab[kOuts][kBatch];
#pragma unroll
            for (int b = 0; b < kBatch; ++b) {
                const int64_t o = (int64_t)(i0 + b < n_t ? i0 + b : n_t - 1) * (1 + hd);
#pragma unroll
                for (int k = 0; k < kOuts; ++k) {
                    zb[k][b] = __ldcg(zrow[k] + o);
                    ab[k][b] = __ldcg(zrow[k] + o + 1 + dk[k]);
                }
            }
#pragma unroll
            for (int b = 0; b < kBatch; ++b)
                if (i0 + b < n_t) {
#pragma unroll
                    for (int k = 0; k < kOuts; ++k) {
                        Z[k] = Z[k] + zb[k][b];
                        A[k] = A[k] + ab[k][b];
                    }
                }
        }
#pragma unroll
        for (int k = 0; k < kOuts; ++k) {
            if (prs[k] >= G * hd) break;
            const float o = canon_div(A[k], Z[k]);
            p.out[(int64_t)(g * G + prs[k] / hd) * hd + dk[k]] = o;
            o_sh[prs[k]] = o;
        }
    }
    if (p.out_q8) {  // the group's G * hd outputs are whole Q8K blocks of attn_out: quantise them
        __syncthreads();
        const int nbq = G * hd / QK_K;
        for (int b = warp; b < nbq; b += kDecWarps)
            warp_quantize_q8k_block(o_sh + b * QK_K, p.out_q8 + (int64_t)g * nbq + b);
    }
    if (threadIdx.x == 0) p.counters[g] = 0u;  // ready for the next launch
}

// ---- one launch per step: a thread-block cluster per KV head (sm_90) ----------------------
//
// grid (C, n_head_kv) in clusters of C blocks along x; block `rank` of KV head g's cluster:
//  1. (before the wait) loads the norm weights and RoPE rows of its heads (DecFront) and
//     prefetches into L2 the cache rows below pos it will read — written by earlier steps, and
//     pos itself was written before the graph started;
//  2. computes its G query heads (norm + RoPE, stored by rank 0) and the scores of the 32-key
//     runs rank, rank + C, ... exactly as dec_attn_scores; the owner of the run holding pos
//     first appends K and V at pos; each warp keeps the maximum of its head's scores;
//  3. cluster barrier; m per head = the maximum of the C blocks' maxima, read through
//     distributed shared memory (a NaN s_0 wins: rank 0, the owner of run 0, keeps each head's
//     s_0 in shared memory for that), as dec_attn_values;
//  4. takes the tiles rank, rank + C, ...: e_j and the tile's z and a[d] from +0.0f in ascending
//     j (each lane runs up to four columns' chains), into the scratch partials as
//     dec_attn_values;
//  5. cluster barrier; the 256-output chunks rank, rank + C, ... of the group's G * hd outputs
//     are combined over the tiles in ascending order and divided (attn_split_combine's
//     expression), and quantised to Q8K when asked. With one tile (pos < 128) its owner,
//     rank 0, does that in step 4 from its registers (Z = +0.0f + z, A = +0.0f + a: the same
//     expression), so the combine's round trip through the partials leaves the critical path.
// The barriers release and acquire at cluster scope, so the scores, partials and the appended
// V row written by one block are visible to the others; those are read with ld.global.cg
// (this SM's L1 may hold the scratch lines from an earlier layer's launch).
constexpr int kVCols = 128;  // V columns staged per chunk (each lane: up to 4 column chains)

Q3_HD int64_t cluster_kv_floats(int hd) {
    const int64_t k = (int64_t)kKeys * (hd + 1), v = (int64_t)kAttnTile * kVCols;
    return k > v ? k : v;
}

// Dynamic shared floats: q [kMaxGroup][hd], K run / V chunk, e [kMaxGroup][kAttnTile], one
// Q8K block of outputs, block maxima, final maxima and key 0's scores [kMaxGroup] each.
Q3_HD int64_t cluster_smem_floats(int hd) {
    return (int64_t)kMaxGroup * hd + cluster_kv_floats(hd) + (int64_t)kMaxGroup * kAttnTile + QK_K + 3 * kMaxGroup;
}

// The whole block: prefetch rows [j0, j1) of KV head g's slice (hd elements) of a cache into L2.
template <bool F16>
__device__ __forceinline__ void prefetch_kv_rows(const void* cache, int64_t kv_row, int g, int hd, int64_t j0,
                                                 int64_t j1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const int64_t es = F16 ? 2 : 4;
    const uint32_t bytes = (uint32_t)(hd * es);  // a multiple of 64 (hd % 32 == 0)
    for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
        const char* a = static_cast<const char*>(cache) + (j * kv_row + (int64_t)g * hd) * es;
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(a), "r"(bytes) : "memory");
    }
#endif
}

template <bool F16>
__global__ void __launch_bounds__(kDecThreads, 1) dec_attn_cluster(DecAttnArgs p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    static_assert(kDecThreads == QK_K, "one output per thread in a 256-output chunk");
    extern __shared__ __align__(16) float csm[];
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int g = blockIdx.y, G = p.n_head / p.n_head_kv, hd = p.hd;
    const int C = (int)cluster.num_blocks(), rank = (int)cluster.block_rank();
    float* q_sh = csm;                                  // [G][hd]
    float* kv_sh = q_sh + kMaxGroup * hd;               // K run [kKeys][hd + 1] / V chunk [kAttnTile][kVCols]
    float* e_sh = kv_sh + cluster_kv_floats(hd);        // [G][kAttnTile]
    float* o_sh = e_sh + kMaxGroup * kAttnTile;         // [QK_K]
    float* bm_sh = o_sh + QK_K;                         // [G] this block's maxima (read by the cluster)
    float* m_sh = bm_sh + kMaxGroup;                    // [G] the heads' m
    float* s0_sh = m_sh + kMaxGroup;                    // [G] rank 0: the heads' scores of key 0
    const Layout L = layout(p);
    const int64_t kv_row = (int64_t)p.n_head_kv * hd;
    const int64_t pos = p.pos[0];
    const int n_runs = (int)(pos / kKeys) + 1, n_t = (int)(pos / kAttnTile) + 1;
    dec_mark(p.trace, 0);
    // Warp `warp` < G of a block with runs normalises and rotates q head g * G + warp (rank 0
    // stores q_normed, q_rope); warp 0 of the owner of the run holding pos (always a block with
    // runs) also does k head g and appends K and V at pos. Their weights and RoPE rows first.
    const bool q_head = rank < n_runs && warp < G;
    const bool k_head = q_head && warp == 0 && rank == (int)((pos / kKeys) % C);
    DecFront front;
    front.preload(p, pos, q_head, k_head);
    for (int r = rank; r < n_runs; r += C)
        prefetch_kv_rows<F16>(p.k_cache, kv_row, g, hd, (int64_t)r * kKeys, std::min<int64_t>((int64_t)(r + 1) * kKeys, pos));
    for (int t = rank; t < n_t; t += C)
        prefetch_kv_rows<F16>(p.v_cache, kv_row, g, hd, (int64_t)t * kAttnTile,
                         std::min<int64_t>((int64_t)(t + 1) * kAttnTile, pos));
    pdl_wait();
    pdl_launch_next();
    dec_mark(p.trace, 1);
    if (q_head) front.run(p, F16, pos, g, warp, rank == 0, k_head, q_sh + warp * hd, kv_sh + warp * hd, e_sh);
    const float kq_scale = canon_div(1.0f, canon_sqrt((float)hd));
    dec_mark(p.trace, 2);
    const int ldk = hd + 1;  // lanes reading one column of the K run hit distinct banks
    float mloc = -__int_as_float(0x7f800000);
    for (int r = rank; r < n_runs; r += C) {
        const int64_t j0 = (int64_t)r * kKeys;
        const int len = (int)(pos + 1 - j0 < kKeys ? pos + 1 - j0 : kKeys);
        __syncthreads();  // q_sh and the cache row at pos written / kv_sh free again
        stage_kv<F16>(p.k_cache, j0 * kv_row + (int64_t)g * hd, kv_row, len, hd, kv_sh, ldk);
        __syncthreads();
        if (warp < G && lane < len) {
            const int h = warp;
            float part[kWarp];
#pragma unroll
            for (int l = 0; l < kWarp; ++l) part[l] = 0.0f;
#pragma unroll
            for (int c = 0; c < kMaxHeadDim; c += kWarp) {  // hd % 32 == 0
                if (c < hd) {
#pragma unroll
                    for (int l = 0; l < kWarp; ++l)
                        part[l] = canon_fma(q_sh[h * hd + c + l], kv_sh[lane * ldk + c + l], part[l]);
                }
            }
            // canon_tree32, unrolled so the partials stay in registers.
#pragma unroll
            for (int l = 0; l < 16; ++l) part[l] = part[l] + part[l + 16];
#pragma unroll
            for (int l = 0; l < 8; ++l) part[l] = part[l] + part[l + 8];
#pragma unroll
            for (int l = 0; l < 4; ++l) part[l] = part[l] + part[l + 4];
#pragma unroll
            for (int l = 0; l < 2; ++l) part[l] = part[l] + part[l + 2];
            part[0] = part[0] + part[1];
            const float s = part[0] * kq_scale;
            L.scores[(int64_t)(g * G + h) * p.n_ctx + j0 + lane] = s;
            if (j0 + lane == 0) s0_sh[h] = s;  // run 0 is rank 0's
            mloc = fmaxf(mloc, s);
        }
    }
    if (warp < G) {
        const float mx = warp_max(mloc);  // exact in any order
        if (lane == 0) bm_sh[warp] = mx;
    }
    dec_mark(p.trace, 3);
    cluster.sync();  // 1: every block's scores and maxima, and the rows at pos
    if (warp < G) {
        float mx = -__int_as_float(0x7f800000);
        for (int c = lane; c < C; c += kWarp) mx = fmaxf(mx, cluster.map_shared_rank(bm_sh, c)[warp]);
        mx = warp_max(mx);
        const float s0 = cluster.map_shared_rank(s0_sh, 0)[warp];  // through distributed shared memory
        if (lane == 0) m_sh[warp] = s0 != s0 ? s0 : mx;  // a NaN s_0 wins, as the CPU
    }
    dec_mark(p.trace, 4);
    for (int t = rank; t < n_t; t += C) {
        const int64_t t0 = (int64_t)t * kAttnTile;
        const int len = (int)(pos + 1 - t0 < kAttnTile ? pos + 1 - t0 : kAttnTile);
        __syncthreads();  // m_sh written / e_sh, kv_sh free again
        for (int i = threadIdx.x; i < G * kAttnTile; i += blockDim.x) {
            const int h = i / kAttnTile, j = i % kAttnTile;
            if (j < len) e_sh[h * kAttnTile + j] = canon_exp(__ldcg(L.scores + (int64_t)(g * G + h) * p.n_ctx + t0 + j) - m_sh[h]);
        }
        for (int c0 = 0; c0 < hd; c0 += kVCols) {
            const int nc = hd - c0 < kVCols ? hd - c0 : kVCols, ni = nc / kWarp;
            if (c0) __syncthreads();  // the previous chunk's readers are done
            stage_kv<F16, true>(p.v_cache, t0 * kv_row + (int64_t)g * hd + c0, kv_row, len, nc, kv_sh, kVCols);
            __syncthreads();
            if (warp < G) {
                const int h = warp;
                float z = 0.0f, a[kVCols / kWarp];
#pragma unroll
                for (int i = 0; i < kVCols / kWarp; ++i) a[i] = 0.0f;
#pragma unroll 4
                for (int j = 0; j < len; ++j) {
                    const float e = e_sh[h * kAttnTile + j];
                    z = z + e;
#pragma unroll
                    for (int i = 0; i < kVCols / kWarp; ++i)
                        if (i < ni) a[i] = canon_fma(e, kv_sh[j * kVCols + lane + kWarp * i], a[i]);
                }
                if (n_t == 1) {
                    // The only tile: its owner (rank 0) finishes the combine here, exactly
                    // attn_split_combine's Z = +0.0f + z, A = +0.0f + a, o = A / Z, into q_sh
                    // (free after the scores) as the group's outputs [h][d].
#pragma unroll
                    for (int i = 0; i < kVCols / kWarp; ++i)
                        if (i < ni) {
                            const int d = c0 + lane + kWarp * i;
                            const float o = canon_div(0.0f + a[i], 0.0f + z);
                            p.out[(int64_t)(g * G + h) * hd + d] = o;
                            q_sh[h * hd + d] = o;
                        }
                    continue;
                }
                float* part = L.part + ((int64_t)(g * G + h) * L.n_tiles + t) * (int64_t)(1 + hd);
                if (c0 == 0 && lane == 0) part[0] = z;
#pragma unroll
                for (int i = 0; i < kVCols / kWarp; ++i)
                    if (i < ni) part[1 + c0 + lane + kWarp * i] = a[i];
            }
        }
    }
    const int n_out = G * hd, n_chunks = (n_out + QK_K - 1) / QK_K;
    if (n_t == 1 && rank == 0 && p.out_q8) {  // whole Q8K blocks (checked on the host) of the outputs
        __syncthreads();
        for (int b = warp; b < n_chunks; b += kDecWarps)
            warp_quantize_q8k_block(q_sh + b * QK_K, p.out_q8 + (int64_t)g * n_chunks + b);
    }
    dec_mark(p.trace, 5);
    cluster.sync();  // 2: every tile's partials (and no block exits while its maxima are read)
    dec_mark(p.trace, 6);
    if (n_t == 1) return;  // rank 0 has finished
    constexpr int kBatch = 8;  // loads issued together, then added in ascending order
    for (int qc = rank; qc < n_chunks; qc += C) {
        const int pr = qc * QK_K + (int)threadIdx.x;
        if (pr < n_out) {
            const int h = pr / hd, d = pr % hd;
            const float* part = L.part + (int64_t)(g * G + h) * L.n_tiles * (int64_t)(1 + hd);
            float Z = 0.0f, A = 0.0f;
            for (int i0 = 0; i0 < n_t; i0 += kBatch) {  // ascending tile order from +0.0f
                float zb[kBatch], ab[kBatch];
#pragma unroll
                for (int b = 0; b < kBatch; ++b) {
                    const int i = i0 + b < n_t ? i0 + b : n_t - 1;
                    zb[b] = __ldcg(part + i * (int64_t)(1 + hd));
                    ab[b] = __ldcg(part + i * (int64_t)(1 + hd) + 1 + d);
                }
#pragma unroll
                for (int b = 0; b < kBatch; ++b)
                    if (i0 + b < n_t) {
                        Z = Z + zb[b];
                        A = A + ab[b];
                    }
            }
            const float o = canon_div(A, Z);
            p.out[(int64_t)(g * G + h) * hd + d] = o;
            o_sh[threadIdx.x] = o;
        }
        if (p.out_q8) {  // whole Q8K blocks (checked on the host): chunk qc is block qc of the group
            __syncthreads();
            if (warp == 0) warp_quantize_q8k_block(o_sh, p.out_q8 + (int64_t)g * n_chunks + qc);
            __syncthreads();
        }
    }
    dec_mark(p.trace, 7);
#endif
}
}  // namespace

size_t dec_attention_scratch_floats(int n_head, int hd, int64_t n_ctx) {
    const int64_t n_tiles = (n_ctx + kAttnTile - 1) / kAttnTile;
    return (size_t)n_head * ((size_t)n_ctx + (size_t)n_tiles * (kSubs + 1 + (size_t)hd));
}

void dec_attention(const DecAttnArgs& p, void* stream, bool pdl) {
    if (p.hd <= 0 || p.hd > kMaxHeadDim || p.hd % kWarp != 0 || p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0 ||
        p.n_head / p.n_head_kv > kMaxGroup)
        throw std::invalid_argument("dec_attention: head_dim a multiple of 32 up to 256 and at most 8 query heads per KV head");
    if (p.out_q8 && (p.n_head / p.n_head_kv * p.hd) % QK_K != 0)
        throw std::invalid_argument("dec_attention: out_q8 needs whole Q8K blocks per KV head group");
    if (p.n_ctx <= 0 || p.n_split < 1 || !p.scratch || !p.counters || !p.pos)
        throw std::invalid_argument("dec_attention: bad arguments");
    if (p.cluster > 0) {
        if (p.cluster > 16) throw std::invalid_argument("dec_attention: at most 16 blocks per cluster");
        const dim3 grid((unsigned)p.cluster, (unsigned)p.n_head_kv);
        const size_t smem = (size_t)cluster_smem_floats(p.hd) * sizeof(float);
        if (p.cache_f16) {
            dec_set_smem(dec_attn_cluster<true>, smem, "dec_attention");
            launch_dec_cluster(dec_attn_cluster<true>, grid, p.cluster, smem, stream, pdl, p);
        } else {
            dec_set_smem(dec_attn_cluster<false>, smem, "dec_attention");
            launch_dec_cluster(dec_attn_cluster<false>, grid, p.cluster, smem, stream, pdl, p);
        }
        return;
    }
    const dim3 grid((unsigned)p.n_split, (unsigned)p.n_head_kv);
    if (p.cache_f16) {
        launch_dec(dec_attn_scores<true>, grid, 0, stream, pdl, p);
        launch_dec(dec_attn_values<true>, grid, 0, stream, pdl, p);
    } else {
        launch_dec(dec_attn_scores<false>, grid, 0, stream, pdl, p);
        launch_dec(dec_attn_values<false>, grid, 0, stream, pdl, p);
    }
}

int dec_attention_max_split(int n_head_kv, bool cache_f16) {
    int dev = 0, sms = 0, a = 0, b = 0;
    const bool ok =
        cudaGetDevice(&dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess &&
        (cache_f16 ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&a, dec_attn_scores<true>, kDecThreads, 0)
                   : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&a, dec_attn_scores<false>, kDecThreads, 0)) ==
            cudaSuccess &&
        (cache_f16 ? cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, dec_attn_values<true>, kDecThreads, 0)
                   : cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, dec_attn_values<false>, kDecThreads, 0)) ==
            cudaSuccess;
    if (!ok) {
        cudaGetLastError();  // clear the (non-sticky) error of the failed query
        sms = sms > 0 ? sms : 32, a = b = 1;
    }
    const int per_sm = std::max(1, std::min(a, b));
    return std::max(1, per_sm * sms / std::max(1, n_head_kv));
}

int dec_attention_cluster_size(int hd, int n_head_kv, bool cache_f16) {
    if (hd <= 0 || hd > kMaxHeadDim || hd % kWarp != 0) return 0;
    const size_t smem = (size_t)cluster_smem_floats(hd) * sizeof(float);
    if (cache_f16) {
        dec_set_smem(dec_attn_cluster<true>, smem, "dec_attention");
        return dec_cluster_size(dec_attn_cluster<true>, smem, 16, n_head_kv);
    }
    dec_set_smem(dec_attn_cluster<false>, smem, "dec_attention");
    return dec_cluster_size(dec_attn_cluster<false>, smem, 16, n_head_kv);
}

}  // namespace qwen3moe::cuda
