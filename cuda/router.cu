// router.cu — softmax + top-k + renormalised weights, one warp per token (warp_router_topk,
// router.cuh, shared with the fused decode router).
#include <stdexcept>
#include <string>

#include "cuda/router.cuh"

namespace qwen3moe::cuda {

namespace {
constexpr int kTokensPerBlock = 4;
constexpr int kMaxExpert = 1024;  // 32 per lane

__global__ void router_kernel(const float* __restrict__ logits, int n_tok, int n_expert, int k,
                              float* __restrict__ probs, int32_t* __restrict__ ids, float* __restrict__ weights) {
    const int64_t t = (int64_t)blockIdx.x * kTokensPerBlock + (threadIdx.x >> 5);
    if (t >= n_tok) return;  // warp-uniform
    warp_router_topk(logits + t * n_expert, n_expert, k, probs + t * n_expert, ids + t * k, weights + t * k);
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
    router_kernel<<<ceil_div_u(n_tok, kTokensPerBlock), kTokensPerBlock * kWarp, 0, stream>>>(
        logits, n_tok, n_expert, k, probs, ids, weights);
    Q3_CUDA_CHECK_LAUNCH();
}

void router_topk(const float* logits, int n_tok, int n_expert, int k, float* probs, int32_t* ids,
                 float* weights, void* stream) {
    router_topk_launch(logits, n_tok, n_expert, k, probs, ids, weights, to_stream(stream));
}

}  // namespace qwen3moe::cuda
