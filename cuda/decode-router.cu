// decode-router.cu — the decode step's MoE router in one launch: every block computes
// y = RMSNorm(ffn_inp) * ffn_norm (and its Q8K blocks) in shared memory, block 0 stores both
// (the experts read the Q8K blocks), each warp computes router logits rows by the matvec rule
// of the router's type (the block's rows copied into shared memory before the wait), and
// the last block to finish (atomic counter) runs softmax + top-k with warp_router_topk
// (router.cuh) — the same expressions as rms_norm_q8k + matvec + router_topk.
#include <stdexcept>
#include <string>

#include "cuda/decode-common.cuh"
#include "cuda/decode-ops.h"
#include "cuda/router.cuh"
#include "runtime/errors.h"

namespace qwen3moe::cuda {

namespace {
constexpr int kMaxExpert = 1024;

__device__ __forceinline__ float router_row(uint32_t type, const uint8_t* wrow, const float* y, const block_q8k* q,
                                            int64_t n) {
    switch (type) {
        case GGML_TYPE_F32: return warp_row_dot_f32act<GGML_TYPE_F32>(wrow, y, n);
        case GGML_TYPE_F16: return warp_row_dot_f32act<GGML_TYPE_F16>(wrow, y, n);
        case GGML_TYPE_BF16: return warp_row_dot_f32act<GGML_TYPE_BF16>(wrow, y, n);
        default: return warp_row_dot_q8k_any(type, wrow, q, n / QK_K);
    }
}

__host__ __device__ inline int64_t router_row_bytes(uint32_t type, int64_t n) {
    switch (type) {
        case GGML_TYPE_F32: return n * 4;
        case GGML_TYPE_F16:
        case GGML_TYPE_BF16: return n * 2;
        default: return q8k_row_bytes(type, n);
    }
}

__global__ void __launch_bounds__(kDecThreads) dec_router_kernel(DecRouterArgs p, int64_t w_smem) {
    extern __shared__ __align__(16) unsigned char smem[];
    float* y_sh = reinterpret_cast<float*>(smem + w_smem);
    block_q8k* q_sh = reinterpret_cast<block_q8k*>(smem + w_smem + p.n * sizeof(float));
    __shared__ float l_sh[kMaxExpert];
    __shared__ bool last_sh;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int64_t row = (int64_t)blockIdx.x * kDecWarps + warp;
    const int64_t rb = router_row_bytes(p.type, p.n);
    // This block's router rows into shared memory (weights: before the wait).
    const int64_t r0 = (int64_t)blockIdx.x * kDecWarps;
    const int64_t r1 = r0 + kDecWarps < p.n_expert ? r0 + kDecWarps : p.n_expert;
    const uint8_t* ws = stage_async(smem, static_cast<const uint8_t*>(p.w) + r0 * rb, (r1 - r0) * rb);
    stage_commit();
    pdl_wait();
    pdl_launch_next();
    block_rms_norm_q8k(p.x, p.norm_w, p.n, p.eps, y_sh, q_sh);
    if (blockIdx.x == 0) {
        for (int64_t i = threadIdx.x; i < p.n; i += blockDim.x) p.norm_out[i] = y_sh[i];
        const int* src = reinterpret_cast<const int*>(q_sh);
        int* dst = reinterpret_cast<int*>(p.norm_q8);
        for (int64_t i = threadIdx.x; i < p.n / QK_K * (int64_t)sizeof(block_q8k) / 4; i += blockDim.x) dst[i] = src[i];
    }
    stage_wait();
    if (row < p.n_expert) {  // warp-uniform
        const float v = router_row(p.type, ws + (row - r0) * rb, y_sh, q_sh, p.n);
        if (lane == 0) p.logits[row] = v;
    }
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_sh = atomicAdd(p.counter, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last_sh) return;
    __threadfence();
    __shared__ float pr_sh[kMaxExpert];
    for (int i = threadIdx.x; i < p.n_expert; i += blockDim.x) l_sh[i] = __ldcg(p.logits + i);
    __syncthreads();
    // Probabilities in shared memory (the top-k rounds re-read them), then stored.
    if (warp == 0) warp_router_topk(l_sh, p.n_expert, p.k, pr_sh, p.ids, p.weights);
    __syncthreads();
    for (int i = threadIdx.x; i < p.n_expert; i += blockDim.x) p.probs[i] = pr_sh[i];
    if (threadIdx.x == 0) *p.counter = 0u;  // ready for the next launch
}
}  // namespace

void dec_router(const DecRouterArgs& p, void* stream, bool pdl) {
    if (p.n <= 0 || p.n % QK_K != 0) throw std::invalid_argument("dec_router: n must be a positive multiple of 256");
    if (p.n_expert <= 0 || p.n_expert > kMaxExpert || p.k <= 0 || p.k > p.n_expert || p.k > kRouterMaxUsed)
        throw std::invalid_argument("dec_router: n_expert 1..1024 and k 1..min(n_expert, 64)");
    const bool f32act = p.type == GGML_TYPE_F32 || p.type == GGML_TYPE_F16 || p.type == GGML_TYPE_BF16;
    if (!f32act && !dec_q8k_type(p.type))
        throw UnsupportedType(std::string("dec_router: no fused decode dot for router type ") + ggml_type_name(p.type));
    if (!p.norm_out || !p.norm_q8 || !p.logits || !p.probs || !p.ids || !p.weights || !p.counter)
        throw std::invalid_argument("dec_router: null buffer");
    const size_t norm_smem = (size_t)p.n * sizeof(float) + (size_t)(p.n / QK_K) * sizeof(block_q8k);
    if (norm_smem + 2 * kMaxExpert * sizeof(float) > kDecMaxSmem) throw std::invalid_argument("dec_router: row too long");
    const int64_t w_smem = stage_bytes(kDecWarps * router_row_bytes(p.type, p.n));
    const size_t smem = (size_t)w_smem + norm_smem;
    dec_set_smem(dec_router_kernel, smem, "dec_router");
    launch_dec(dec_router_kernel, dim3(ceil_div_u(p.n_expert, kDecWarps)), smem, stream, pdl, p, w_smem);
}

}  // namespace qwen3moe::cuda
