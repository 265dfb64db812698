// attention.cu — one thread block (4 warps) per (query token, head).
// Pass 1: the warps compute the scores of strided key positions and the block takes the max.
// Pass 2: tile by tile, the warps recompute the tile's scores (identical bits) into shared
// memory as e_j, then thread d accumulates z and a[d] sequentially over the tile, and adds the
// tile into Z, A[d] — exactly the canonical tile order. Scores are recomputed rather than
// stored so the kernel needs no scratch proportional to the context.
#include <stdexcept>
#include <string>

#include "cuda/attention.cuh"
#include "cuda/qk-norm-rope.cuh"

namespace qwen3moe::cuda {

namespace {
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarp;
constexpr int kMaxHeadDim = 256;  // two output dims per thread

template <bool F16>
__device__ __forceinline__ float kv_value(const void* cache, int64_t i) {
    if constexpr (F16)
        return canon_f16_to_f32(static_cast<const uint16_t*>(cache)[i]);
    else
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
__global__ void __launch_bounds__(kThreads) attention_kernel(AttentionArgs p) {
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

        // Pass 1: m = max_j s_j.
        float mx = -__int_as_float(0x7f800000);
        for (int64_t j = warp; j <= pos; j += kWarps) {
            const float s = score<F16>(q_sh, p.k_cache, j * kv_row + (int64_t)g * hd, hd, kq_scale);
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
            for (int j = warp; j < len; j += kWarps) {
                const float s = score<F16>(q_sh, p.k_cache, (t0 + j) * kv_row + (int64_t)g * hd, hd, kq_scale);
                if (lane == 0) e_sh[j] = canon_exp(s - m);
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
}  // namespace

void attention_launch(const AttentionArgs& p, cudaStream_t stream) {
    if (p.hd <= 0 || p.hd > kMaxHeadDim)
        throw std::invalid_argument("cuda attention: head_dim " + std::to_string(p.hd) + " must be in 1..256");
    if (p.n_head <= 0 || p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0)
        throw std::invalid_argument("cuda attention: n_head " + std::to_string(p.n_head) +
                                    " is not a multiple of n_head_kv " + std::to_string(p.n_head_kv));
    if (p.n_tok < 0 || p.n_ctx <= 0) throw std::invalid_argument("cuda attention: bad shape");
    if (p.n_tok == 0) return;
    const dim3 grid((unsigned)p.n_head, (unsigned)(p.n_tok < 65535 ? p.n_tok : 65535));
    if (p.cache_f16)
        attention_kernel<true><<<grid, kThreads, 0, stream>>>(p);
    else
        attention_kernel<false><<<grid, kThreads, 0, stream>>>(p);
    Q3_CUDA_CHECK_LAUNCH();
}

void attention(const AttentionArgs& args, void* stream) { attention_launch(args, to_stream(stream)); }

}  // namespace qwen3moe::cuda
