// decode-attention.cu — attention of the decode step's single token, split-K over key tiles
// with a grid that does not depend on the position (so the launch can live in a CUDA graph):
// block (s, g) serves the G = n_head / n_head_kv query heads of KV head g and the key tiles
// s, s + n_split, ... that the token's position needs (read from the device).
//
//  1. dec_attn_scores: each warp takes keys of the tile; per key the K row is loaded once and
//     the scores of the G heads are computed with the canonical warp dot (as `score` in
//     attention.cu); scores -> scratch, per (head, tile) maxima -> scratch.
//  2. dec_attn_values: m = max of the tile maxima (a NaN s_0 wins, as the CPU), e_j =
//     canon_exp(s_j - m) in shared memory, then per (head, d) the tile's z and a[d] in
//     ascending j -> scratch; the last block of KV head g (atomic counter) adds the tiles in
//     ascending order from +0.0f and divides: exactly attn_split_combine's expression.
#include <stdexcept>
#include <string>

#include <cuda_fp16.h>

#include "cuda/decode-common.cuh"
#include "cuda/decode-ops.h"

namespace qwen3moe::cuda {

namespace {
constexpr int kMaxGroup = 16;     // query heads per KV head
constexpr int kMaxHeadDim = 256;

template <bool F16>
__device__ __forceinline__ float kv_val(const void* cache, int64_t i) {
    if constexpr (F16) {
        const uint16_t h = static_cast<const uint16_t*>(cache)[i];
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0u) return canon_f16_to_f32(h);  // NaN
        return __half2float(__ushort_as_half(h));
    } else {
        return static_cast<const float*>(cache)[i];
    }
}

struct Layout {
    float* scores;  // [n_head][n_ctx]
    float* tmax;    // [n_head][n_tiles]
    float* part;    // [n_head][n_tiles][1 + hd]
    int n_tiles;    // ceil(n_ctx / kAttnTile)
};

__device__ __forceinline__ Layout layout(const DecAttnArgs& p) {
    Layout L;
    L.n_tiles = (int)((p.n_ctx + kAttnTile - 1) / kAttnTile);
    L.scores = p.scratch;
    L.tmax = L.scores + (int64_t)p.n_head * p.n_ctx;
    L.part = L.tmax + (int64_t)p.n_head * L.n_tiles;
    return L;
}

template <bool F16>
__global__ void __launch_bounds__(kDecThreads) dec_attn_scores(DecAttnArgs p) {
    __shared__ float q_sh[kMaxGroup][kMaxHeadDim];
    __shared__ float red[kDecWarps][kMaxGroup];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int g = blockIdx.y, G = p.n_head / p.n_head_kv, hd = p.hd;
    const Layout L = layout(p);
    pdl_wait();
    pdl_launch_next();
    const int64_t pos = p.pos[0];
    const int n_t = (int)(pos / kAttnTile) + 1;
    if ((int)blockIdx.x >= n_t) return;  // block-uniform: no tile for this block
    for (int i = threadIdx.x; i < G * hd; i += blockDim.x) q_sh[i / hd][i % hd] = p.q[((int64_t)g * G) * hd + i];
    __syncthreads();
    const int64_t kv_row = (int64_t)p.n_head_kv * hd;
    const float kq_scale = canon_div(1.0f, canon_sqrt((float)hd));
    for (int tile = blockIdx.x; tile < n_t; tile += gridDim.x) {
        const int64_t t0 = (int64_t)tile * kAttnTile;
        const int len = (int)(pos + 1 - t0 < kAttnTile ? pos + 1 - t0 : kAttnTile);
        float mx[kMaxGroup];
#pragma unroll
        for (int h = 0; h < kMaxGroup; ++h) mx[h] = -__int_as_float(0x7f800000);
        for (int j = warp; j < len; j += kDecWarps) {
            const int64_t ko = (t0 + j) * kv_row + (int64_t)g * hd;
            float kv[kMaxHeadDim / kWarp];
#pragma unroll
            for (int c = 0; c < kMaxHeadDim / kWarp; ++c)
                kv[c] = lane + c * kWarp < hd ? kv_val<F16>(p.k_cache, ko + lane + c * kWarp) : 0.0f;
#pragma unroll
            for (int h = 0; h < kMaxGroup; ++h) {
                if (h >= G) break;
                float acc = 0.0f;  // lane partial of canon_dot: i = lane, lane + 32, ... ascending
#pragma unroll
                for (int c = 0; c < kMaxHeadDim / kWarp; ++c)
                    if (lane + c * kWarp < hd) acc = canon_fma(q_sh[h][lane + c * kWarp], kv[c], acc);
                const float s = warp_tree_sum(acc) * kq_scale;
                if (lane == 0) L.scores[(int64_t)(g * G + h) * p.n_ctx + t0 + j] = s;
                mx[h] = fmaxf(mx[h], s);
            }
        }
        if (lane == 0)
            for (int h = 0; h < G; ++h) red[warp][h] = mx[h];
        __syncthreads();
        if ((int)threadIdx.x < G) {
            float m = red[0][threadIdx.x];
            for (int w = 1; w < kDecWarps; ++w) m = fmaxf(m, red[w][threadIdx.x]);
            L.tmax[(int64_t)(g * G + threadIdx.x) * L.n_tiles + tile] = m;
        }
        __syncthreads();  // red is rewritten by the next tile
    }
}

template <bool F16>
__global__ void __launch_bounds__(kDecThreads) dec_attn_values(DecAttnArgs p) {
    __shared__ float e_sh[kMaxGroup][kAttnTile];
    __shared__ float m_sh[kMaxGroup];
    __shared__ bool last_sh;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int g = blockIdx.y, G = p.n_head / p.n_head_kv, hd = p.hd;
    const Layout L = layout(p);
    pdl_wait();
    pdl_launch_next();
    const int64_t pos = p.pos[0];
    const int n_t = (int)(pos / kAttnTile) + 1;
    const int64_t kv_row = (int64_t)p.n_head_kv * hd;
    if ((int)blockIdx.x < n_t) {  // block-uniform
        // m per head: the maximum of the tile maxima (exact in any order); a NaN s_0 wins.
        for (int h = warp; h < G; h += kDecWarps) {
            const int64_t row = g * G + h;
            float mx = -__int_as_float(0x7f800000);
            for (int i = lane; i < n_t; i += kWarp) mx = fmaxf(mx, L.tmax[row * L.n_tiles + i]);
            mx = warp_max(mx);
            const float s0 = L.scores[row * p.n_ctx];
            if (lane == 0) m_sh[h] = s0 != s0 ? s0 : mx;
        }
        __syncthreads();
        for (int tile = blockIdx.x; tile < n_t; tile += gridDim.x) {
            const int64_t t0 = (int64_t)tile * kAttnTile;
            const int len = (int)(pos + 1 - t0 < kAttnTile ? pos + 1 - t0 : kAttnTile);
            for (int i = threadIdx.x; i < G * kAttnTile; i += blockDim.x) {
                const int h = i / kAttnTile, j = i % kAttnTile;
                if (j < len) e_sh[h][j] = canon_exp(L.scores[(int64_t)(g * G + h) * p.n_ctx + t0 + j] - m_sh[h]);
            }
            __syncthreads();
            const int64_t v_base = t0 * kv_row + (int64_t)g * hd;
            for (int pr = threadIdx.x; pr < G * hd; pr += blockDim.x) {
                const int h = pr / hd, d = pr % hd;
                float z = 0.0f, a = 0.0f;
                for (int j = 0; j < len; ++j) {
                    const float e = e_sh[h][j];
                    z = z + e;
                    a = canon_fma(e, kv_val<F16>(p.v_cache, v_base + j * kv_row + d), a);
                }
                float* part = L.part + ((int64_t)(g * G + h) * L.n_tiles + tile) * (int64_t)(1 + hd);
                if (d == 0) part[0] = z;
                part[1 + d] = a;
            }
            __syncthreads();  // e_sh is rewritten by the next tile
        }
    }
    // The last block of KV head g combines the tiles of its heads.
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_sh = atomicAdd(&p.counters[g], 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last_sh) return;
    __threadfence();
    for (int pr = threadIdx.x; pr < G * hd; pr += blockDim.x) {
        const int h = pr / hd, d = pr % hd;
        const float* part = L.part + (int64_t)(g * G + h) * L.n_tiles * (int64_t)(1 + hd);
        float Z = 0.0f, A = 0.0f;
        for (int i = 0; i < n_t; ++i) {  // ascending tile order from +0.0f
            Z = Z + __ldcg(part + i * (int64_t)(1 + hd));
            A = A + __ldcg(part + i * (int64_t)(1 + hd) + 1 + d);
        }
        p.out[(int64_t)(g * G + h) * hd + d] = canon_div(A, Z);
    }
    if (threadIdx.x == 0) p.counters[g] = 0u;  // ready for the next launch
    (void)warp;
}
}  // namespace

size_t dec_attention_scratch_floats(int n_head, int hd, int64_t n_ctx) {
    const int64_t n_tiles = (n_ctx + kAttnTile - 1) / kAttnTile;
    return (size_t)n_head * ((size_t)n_ctx + (size_t)n_tiles * (2 + (size_t)hd));
}

void dec_attention(const DecAttnArgs& p, void* stream, bool pdl) {
    if (p.hd <= 0 || p.hd > kMaxHeadDim || p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0 ||
        p.n_head / p.n_head_kv > kMaxGroup)
        throw std::invalid_argument("dec_attention: head_dim 1..256 and at most 16 query heads per KV head");
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
