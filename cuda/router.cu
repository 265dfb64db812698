// router.cu — softmax + top-k + renormalised weights, one block per token (block_router_topk,
// router.cuh, shared with the fused decode router).
#include <stdexcept>
#include <string>

#include "cuda/router.cuh"

namespace qwen3moe::cuda {

namespace {
constexpr int kRouterThreads = 128;
constexpr int kMaxExpert = 1024;

__global__ void __launch_bounds__(kRouterThreads) router_kernel(const float* __restrict__ logits, int n_expert, int k,
                                                                float* __restrict__ probs, int32_t* __restrict__ ids,
                                                                float* __restrict__ weights) {
    __shared__ float pr_sh[kMaxExpert];
    __shared__ unsigned long long key_sh[kMaxExpert];
    __shared__ float sel_sh[kRouterMaxUsed];
    __shared__ float red_sh[kRouterThreads / kWarp + 1];
    const int64_t t = blockIdx.x;
    block_router_topk(logits + t * n_expert, n_expert, k, pr_sh, key_sh, sel_sh, red_sh, ids + t * k, weights + t * k);
    for (int i = threadIdx.x; i < n_expert; i += blockDim.x) probs[t * n_expert + i] = pr_sh[i];
}

}  // namespace

void router_topk_launch(const float* logits, int n_tok, int n_expert, int k, float* probs, int32_t* ids,
                        float* weights, cudaStream_t stream) {
    if (n_expert <= 0 || n_expert > kMaxExpert)
        throw std::invalid_argument("cuda router: n_expert " + std::to_string(n_expert) + " must be in 1..1024");
    if (k <= 0 || k > n_expert || k > kRouterMaxUsed)
        throw std::invalid_argument("cuda router: k " + std::to_string(k) + " must be in 1..min(n_expert, 64)");
    if (n_tok < 0) throw std::invalid_argument("cuda router: bad n_tok");
    if (n_tok == 0) return;
    router_kernel<<<(unsigned)n_tok, kRouterThreads, 0, stream>>>(logits, n_expert, k, probs, ids, weights);
    Q3_CUDA_CHECK_LAUNCH();
}

void router_topk(const float* logits, int n_tok, int n_expert, int k, float* probs, int32_t* ids,
                 float* weights, void* stream) {
    router_topk_launch(logits, n_tok, n_expert, k, probs, ids, weights, to_stream(stream));
}

}  // namespace qwen3moe::cuda
