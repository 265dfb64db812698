// decode-attention.cu — attention of the decode step's single token, split-K over key tiles
// with a grid that does not depend on the position (so the launch can live in a CUDA graph):
// the grid is (n_split, n_head_kv); block (s, g) serves the G = n_head / n_head_kv query heads of
// KV head g and takes the work items s, s + n_split, ... that the token's position needs.
//
//  1. dec_attn_scores: every block normalises and rotates its G query heads (norm_rope's
//     expressions) into shared memory; the block that owns the run of the token's own key first
//     computes k head g the same way and appends K and V at pos to the cache (kv_store's values).
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
template <bool F16>
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
                if constexpr (F16) {
                    raw[b][0] = *reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(cache) + off);
                } else {
                    raw[b][0] = *reinterpret_cast<const uint4*>(static_cast<const float*>(cache) + off);
                    raw[b][1] = *reinterpret_cast<const uint4*>(static_cast<const float*>(cache) + off + 4);
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

template <bool F16>
__global__ void __launch_bounds__(kDecThreads, 1) dec_attn_scores(DecAttnArgs p) {
    __shared__ float q_sh[kMaxGroup][kMaxHeadDim];
    __shared__ float k_sh[kKeys][kMaxHeadDim + 1];  // +1: lanes reading one column hit distinct banks
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int g = blockIdx.y, G = p.n_head / p.n_head_kv, hd = p.hd;
    const Layout L = layout(p);
    pdl_wait();
    pdl_launch_next();
    const int64_t pos = p.pos[0];
    const int n_items = ((int)(pos / kKeys)) + 1;  // 32-key runs covering 0..pos
    if ((int)blockIdx.x >= n_items) return;        // block-uniform
    const int64_t kv_row = (int64_t)p.n_head_kv * hd;
    // The group's q heads: norm + RoPE into q_sh (k_sh rows as the warps' scratch); block 0 of
    // the group also stores them (q_normed, q_rope).
    if (warp < G) {
        const int64_t qh = (int64_t)(g * G + warp) * hd;
        const bool store = blockIdx.x == 0;
        warp_norm_rope(p.q + qh, p.q_norm, p.eps, hd, pos, p.rope_cos, p.rope_sin, store ? p.q_normed + qh : nullptr,
                       q_sh[warp], k_sh[warp], nullptr, false, 0);
        __syncwarp();
        if (store)
            for (int i = lane; i < hd; i += kWarp) p.q_rope[qh + i] = q_sh[warp][i];
    }
    // The block whose runs include the token's own key computes k head g (norm + RoPE) and
    // appends K and V at pos before any key is read.
    if ((int)blockIdx.x == (int)((pos / kKeys) % gridDim.x) && warp == 0) {
        const int64_t kh = (int64_t)g * hd;
        warp_norm_rope(p.k + kh, p.k_norm, p.eps, hd, pos, p.rope_cos, p.rope_sin, p.k_normed + kh, p.k_rope + kh,
                       k_sh[kMaxGroup], p.k_cache, p.cache_f16, pos * kv_row + kh);
        for (int i = lane; i < hd; i += kWarp) cache_store(p.v_cache, p.cache_f16, pos * kv_row + kh + i, p.v[kh + i]);
    }
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
    constexpr int kBatch = 8;  // loads issued together, then added in ascending order
    for (int pr = threadIdx.x; pr < G * hd; pr += blockDim.x) {
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
        o_sh[pr] = o;
    }
    if (p.out_q8) {  // the group's G * hd outputs are whole Q8K blocks of attn_out: quantise them
        __syncthreads();
        const int nbq = G * hd / QK_K;
        for (int b = warp; b < nbq; b += kDecWarps)
            warp_quantize_q8k_block(o_sh + b * QK_K, p.out_q8 + (int64_t)g * nbq + b);
    }
    if (threadIdx.x == 0) p.counters[g] = 0u;  // ready for the next launch
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
    const dim3 grid((unsigned)p.n_split, (unsigned)p.n_head_kv);
    if (p.cache_f16) {
        launch_dec(dec_attn_scores<true>, grid, 0, stream, pdl, p);
        launch_dec(dec_attn_values<true>, grid, 0, stream, pdl, p);
    } else {
        launch_dec(dec_attn_scores<false>, grid, 0, stream, pdl, p);
        launch_dec(dec_attn_values<false>, grid, 0, stream, pdl, p);
    }
}

}  // namespace qwen3moe::cuda
