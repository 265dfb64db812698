// attention.cu — two launch shapes with identical bits:
//
// One block (4 warps) per (query token, head), for prefill: pass 1, the warps compute the
// scores of strided key positions and the block takes the max; pass 2, tile by tile, the
// tile's e_j go to shared memory, then thread d accumulates z and a[d] sequentially over the
// tile and adds the tile into Z, A[d] — exactly the canonical tile order. When the batch's
// largest position is known and small enough (kMaxCachedScores), pass 1 keeps the scores in
// shared memory and pass 2 reads them back; otherwise pass 2 recomputes them (identical bits).
//
// f16 cache values are widened by the hardware conversion (exact for every non-NaN f16: all
// f16 values, subnormals included, are f32 values); NaN bit patterns take canon_f16_to_f32 so
// their payload bits stay the canonical ones.
//
// Split-K, for decode at long context (few query rows, many keys): (1) a block per (tile,
// head, token) stores the tile's scores and max; (2) a block per (tile, head, token) takes the
// global max, forms e_j and the tile's (z, a[d]) sequentially; (3) a block per (head, token)
// adds the tiles in ascending order and divides. Every value is the same expression in the
// same order as above.
#include <stdexcept>
#include <string>

#include <cuda_fp16.h>

#include "cuda/attention.cuh"
#include "cuda/qk-norm-rope.cuh"

namespace qwen3moe::cuda {

namespace {
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarp;
constexpr int kMaxHeadDim = 256;  // two output dims per thread
// Largest cached score row (floats of dynamic shared memory; with the static arrays the block
// stays under the 48 KiB that needs no opt-in).
constexpr int64_t kMaxCachedScores = 11 * 1024;

template <bool F16>
__device__ __forceinline__ float kv_value(const void* cache, int64_t i) {
    if constexpr (F16) {
        const uint16_t h = static_cast<const uint16_t*>(cache)[i];
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0u) return canon_f16_to_f32(h);  // NaN
        return __half2float(__ushort_as_half(h));
    } else
        return static_cast<const float*>(cache)[i];
}

// s = canon_dot(q, k_row, hd) * kq_scale, computed by one warp (all lanes return it).
template <bool F16>
__device__ __forceinline__ float score(const float* q, const void* k_cache, int64_t k_off, int hd,
                                       float kq_scale) {
    const int lane = threadIdx.x & 31;
    float p = 0.0f;
    for (int i = lane; i < hd; i += kWarp) p = canon_fma(q[i], kv_value<F16>(k_cache, k_off + i), p);
    return warp_tree_sum(p) * kq_scale;
}

template <bool F16>
__global__ void __launch_bounds__(kThreads) attention_kernel(AttentionArgs p, int64_t n_cached) {
    extern __shared__ float s_cache[];  // [n_cached] scores of the current (token, head)
    __shared__ float q_sh[kMaxHeadDim];
    __shared__ float e_sh[kAttnTile];
    __shared__ float red[kWarps];
    __shared__ float s0_sh;  // score of key 0 (the CPU's max starts from it)
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tid = threadIdx.x;
    const int h = blockIdx.x;
    const int hd = p.hd;
    const int g = h / (p.n_head / p.n_head_kv);
    const int64_t kv_row = (int64_t)p.n_head_kv * hd;
    const float kq_scale = canon_div(1.0f, canon_sqrt((float)hd));

    for (int64_t t = blockIdx.y; t < p.n_tok; t += gridDim.y) {
        float* out = p.out + (t * p.n_head + h) * hd;
        const int64_t pos = p.pos[t];
        if (pos < 0 || pos >= p.n_ctx) {
            for (int d = tid; d < hd; d += kThreads) out[d] = __int_as_float(0x7fc00000);
            continue;  // block-uniform
        }
        for (int d = tid; d < hd; d += kThreads) q_sh[d] = p.q[(t * p.n_head + h) * hd + d];
        __syncthreads();
        const bool cached = pos < n_cached;  // block-uniform

        // Pass 1: m = max_j s_j.
        float mx = -__int_as_float(0x7f800000);
        for (int64_t j = warp; j <= pos; j += kWarps) {
            const float s = score<F16>(q_sh, p.k_cache, j * kv_row + (int64_t)g * hd, hd, kq_scale);
            if (cached && lane == 0) s_cache[j] = s;
            if (j == 0 && lane == 0) s0_sh = s;
            mx = fmaxf(mx, s);
        }
        if (lane == 0) red[warp] = mx;
        __syncthreads();
        // CPU semantics (m = s_0; m = s_j if s_j > m): NaN scores never win, except s_0.
        float m = red[0];
        for (int w = 1; w < kWarps; ++w) m = fmaxf(m, red[w]);
        if (s0_sh != s0_sh) m = s0_sh;

        // Pass 2: tiles in ascending order.
        float Z = 0.0f, A0 = 0.0f, A1 = 0.0f;
        const int d0 = tid, d1 = tid + kThreads;
        for (int64_t t0 = 0; t0 <= pos; t0 += kAttnTile) {
            const int len = (int)(pos + 1 - t0 < kAttnTile ? pos + 1 - t0 : kAttnTile);
            if (cached) {
                for (int j = tid; j < len; j += kThreads) e_sh[j] = canon_exp(s_cache[t0 + j] - m);
            } else {
                for (int j = warp; j < len; j += kWarps) {
                    const float s = score<F16>(q_sh, p.k_cache, (t0 + j) * kv_row + (int64_t)g * hd, hd, kq_scale);
                    if (lane == 0) e_sh[j] = canon_exp(s - m);
                }
            }
            __syncthreads();
            float z = 0.0f, a0 = 0.0f, a1 = 0.0f;
            const int64_t v_base = t0 * kv_row + (int64_t)g * hd;
            for (int j = 0; j < len; ++j) {
                const float e = e_sh[j];
                z = z + e;
                const int64_t vo = v_base + j * kv_row;
                if (d0 < hd) a0 = canon_fma(e, kv_value<F16>(p.v_cache, vo + d0), a0);
                if (d1 < hd) a1 = canon_fma(e, kv_value<F16>(p.v_cache, vo + d1), a1);
            }
            Z = Z + z;
            A0 = A0 + a0;
            A1 = A1 + a1;
            __syncthreads();  // e_sh is rewritten by the next tile
        }
        if (d0 < hd) out[d0] = canon_div(A0, Z);
        if (d1 < hd) out[d1] = canon_div(A1, Z);
        __syncthreads();  // q_sh / red are rewritten for the next token
    }
}

// ---- split-K ------------------------------------------------------------------------------

struct SplitLayout {
    int64_t n_ctx;      // score row length
    int n_tiles;        // tiles per (token, head) row of partials (ceil(n_ctx / kAttnTile))
    int hd;             // head_dim
    float* scores;      // [n_tok][n_head][n_ctx]
    float* tmax;        // [n_tok][n_head][n_tiles]
    float* part;        // [n_tok][n_head][n_tiles][1 + hd]: z, then a[hd]
};

template <bool F16>
__global__ void __launch_bounds__(kThreads) attn_split_scores(AttentionArgs p, SplitLayout L) {
    __shared__ float q_sh[kMaxHeadDim];
    __shared__ float red[kWarps];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tid = threadIdx.x;
    const int tile = blockIdx.x, h = blockIdx.y;
    const int64_t t = blockIdx.z;
    const int64_t pos = p.pos[t];
    const int64_t t0 = (int64_t)tile * kAttnTile;
    if (pos < 0 || pos >= p.n_ctx || t0 > pos) return;  // block-uniform
    const int hd = p.hd;
    const int g = h / (p.n_head / p.n_head_kv);
    const int64_t kv_row = (int64_t)p.n_head_kv * hd;
    const float kq_scale = canon_div(1.0f, canon_sqrt((float)hd));
    const int len = (int)(pos + 1 - t0 < kAttnTile ? pos + 1 - t0 : kAttnTile);
    for (int d = tid; d < hd; d += kThreads) q_sh[d] = p.q[(t * p.n_head + h) * hd + d];
    __syncthreads();
    float* srow = L.scores + (t * p.n_head + h) * L.n_ctx;
    float mx = -__int_as_float(0x7f800000);
    for (int j = warp; j < len; j += kWarps) {
        const float s = score<F16>(q_sh, p.k_cache, (t0 + j) * kv_row + (int64_t)g * hd, hd, kq_scale);
        if (lane == 0) srow[t0 + j] = s;
        mx = fmaxf(mx, s);
    }
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    if (tid == 0) {
        float m = red[0];
        for (int w = 1; w < kWarps; ++w) m = fmaxf(m, red[w]);
        L.tmax[(t * p.n_head + h) * L.n_tiles + tile] = m;
    }
}

template <bool F16>
__global__ void __launch_bounds__(kThreads) attn_split_tiles(AttentionArgs p, SplitLayout L) {
    __shared__ float e_sh[kAttnTile];
    __shared__ float red[kWarps];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tid = threadIdx.x;
    const int tile = blockIdx.x, h = blockIdx.y;
    const int64_t t = blockIdx.z;
    const int64_t pos = p.pos[t];
    const int64_t t0 = (int64_t)tile * kAttnTile;
    if (pos < 0 || pos >= p.n_ctx || t0 > pos) return;  // block-uniform
    const int hd = p.hd;
    const int g = h / (p.n_head / p.n_head_kv);
    const int64_t kv_row = (int64_t)p.n_head_kv * hd;
    const int64_t row = t * p.n_head + h;
    const int n_t = (int)(pos / kAttnTile) + 1;  // tiles of this query
    const int len = (int)(pos + 1 - t0 < kAttnTile ? pos + 1 - t0 : kAttnTile);
    const float* srow = L.scores + row * L.n_ctx;
    // m = max over the tile maxima (exact in any order); CPU semantics: a NaN s_0 wins.
    float mx = -__int_as_float(0x7f800000);
    for (int i = tid; i < n_t; i += kThreads) mx = fmaxf(mx, L.tmax[row * L.n_tiles + i]);
    mx = warp_max(mx);
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    float m = red[0];
    for (int w = 1; w < kWarps; ++w) m = fmaxf(m, red[w]);
    const float s0 = srow[0];
    if (s0 != s0) m = s0;
    for (int j = tid; j < len; j += kThreads) e_sh[j] = canon_exp(srow[t0 + j] - m);
    __syncthreads();
    float z = 0.0f, a0 = 0.0f, a1 = 0.0f;
    const int d0 = tid, d1 = tid + kThreads;
    const int64_t v_base = t0 * kv_row + (int64_t)g * hd;
    for (int j = 0; j < len; ++j) {
        const float e = e_sh[j];
        z = z + e;
        const int64_t vo = v_base + j * kv_row;
        if (d0 < hd) a0 = canon_fma(e, kv_value<F16>(p.v_cache, vo + d0), a0);
        if (d1 < hd) a1 = canon_fma(e, kv_value<F16>(p.v_cache, vo + d1), a1);
    }
    float* part = L.part + (row * L.n_tiles + tile) * (int64_t)(1 + hd);
    if (tid == 0) part[0] = z;
    if (d0 < hd) part[1 + d0] = a0;
    if (d1 < hd) part[1 + d1] = a1;
}

__global__ void __launch_bounds__(kThreads) attn_split_combine(AttentionArgs p, SplitLayout L) {
    const int h = blockIdx.x, tid = threadIdx.x;
    const int64_t t = blockIdx.y;
    const int hd = p.hd;
    float* out = p.out + (t * p.n_head + h) * hd;
    const int64_t pos = p.pos[t];
    if (pos < 0 || pos >= p.n_ctx) {
        for (int d = tid; d < hd; d += kThreads) out[d] = __int_as_float(0x7fc00000);
        return;
    }
    const int64_t row = t * p.n_head + h;
    const int n_t = (int)(pos / kAttnTile) + 1;
    const float* part = L.part + row * L.n_tiles * (int64_t)(1 + hd);
    for (int d = tid; d < hd; d += kThreads) {
        float Z = 0.0f, A = 0.0f;
        for (int i = 0; i < n_t; ++i) {  // ascending tile order from +0.0f
            Z = Z + part[i * (int64_t)(1 + hd)];
            A = A + part[i * (int64_t)(1 + hd) + 1 + d];
        }
        out[d] = canon_div(A, Z);
    }
}

}  // namespace

size_t attention_scratch_floats(int n_tok, int n_head, int hd, int64_t n_ctx) {
    const int64_t n_tiles = (n_ctx + kAttnTile - 1) / kAttnTile;
    return (size_t)n_tok * n_head * ((size_t)n_ctx + (size_t)n_tiles * (2 + (size_t)hd));
}

void attention_launch(const AttentionArgs& p, cudaStream_t stream) {
    if (p.hd <= 0 || p.hd > kMaxHeadDim)
        throw std::invalid_argument("cuda attention: head_dim " + std::to_string(p.hd) + " must be in 1..256");
    if (p.n_head <= 0 || p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0)
        throw std::invalid_argument("cuda attention: n_head " + std::to_string(p.n_head) +
                                    " is not a multiple of n_head_kv " + std::to_string(p.n_head_kv));
    if (p.n_tok < 0 || p.n_ctx <= 0) throw std::invalid_argument("cuda attention: bad shape");
    if (p.split < 0 || p.split > 2) throw std::invalid_argument("cuda attention: split must be 0, 1 or 2");
    if (p.n_tok == 0) return;
    const bool have_scratch = p.scratch && p.scratch_floats >= attention_scratch_floats(p.n_tok, p.n_head, p.hd, p.n_ctx);
    if (p.split == 2 && !have_scratch) throw std::invalid_argument("cuda attention: split-K needs scratch");
    // Auto: split when few (token, head) rows would leave the GPU idle over a long key range.
    const bool split = p.split == 2 || (p.split == 0 && have_scratch && p.n_tok <= 8 &&
                                        (int64_t)p.n_tok * p.n_head < 512 && p.max_pos >= 2 * kAttnTile);
    if (split) {
        SplitLayout L;
        L.n_ctx = p.n_ctx;
        L.n_tiles = (int)((p.n_ctx + kAttnTile - 1) / kAttnTile);
        L.hd = p.hd;
        L.scores = p.scratch;
        L.tmax = L.scores + (size_t)p.n_tok * p.n_head * p.n_ctx;
        L.part = L.tmax + (size_t)p.n_tok * p.n_head * L.n_tiles;
        const int64_t last = p.max_pos >= 0 && p.max_pos < p.n_ctx ? p.max_pos : p.n_ctx - 1;
        const dim3 grid((unsigned)(last / kAttnTile + 1), (unsigned)p.n_head, (unsigned)p.n_tok);
        if (p.cache_f16) {
            attn_split_scores<true><<<grid, kThreads, 0, stream>>>(p, L);
            attn_split_tiles<true><<<grid, kThreads, 0, stream>>>(p, L);
        } else {
            attn_split_scores<false><<<grid, kThreads, 0, stream>>>(p, L);
            attn_split_tiles<false><<<grid, kThreads, 0, stream>>>(p, L);
        }
        Q3_CUDA_CHECK_LAUNCH();
        attn_split_combine<<<dim3((unsigned)p.n_head, (unsigned)p.n_tok), kThreads, 0, stream>>>(p, L);
        Q3_CUDA_CHECK_LAUNCH();
        return;
    }
    const dim3 grid((unsigned)p.n_head, (unsigned)(p.n_tok < 65535 ? p.n_tok : 65535));
    // Scores kept in shared memory when every position is known to fit (tokens whose position
    // exceeds max_pos recompute them instead; never an out-of-bounds write).
    const int64_t n_cached = p.max_pos >= 0 && p.max_pos < kMaxCachedScores ? p.max_pos + 1 : 0;
    const size_t smem = (size_t)n_cached * sizeof(float);
    if (p.cache_f16)
        attention_kernel<true><<<grid, kThreads, smem, stream>>>(p, n_cached);
    else
        attention_kernel<false><<<grid, kThreads, smem, stream>>>(p, n_cached);
    Q3_CUDA_CHECK_LAUNCH();
}

void attention(const AttentionArgs& args, void* stream) { attention_launch(args, to_stream(stream)); }

}  // namespace qwen3moe::cuda
