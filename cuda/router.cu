// router.cu — softmax + top-k + renormalised weights, one warp per token. Lane l owns experts
// l, l+32, ... (at most kMaxExpert in total); the top-k selection is k rounds of a warp-wide
// (probability, index) arg-max that prefers the lower index on equal probabilities.
#include <stdexcept>
#include <string>

#include "cuda/router.cuh"

namespace qwen3moe::cuda {

namespace {
constexpr int kTokensPerBlock = 4;
constexpr int kMaxExpert = 1024;  // 32 per lane
constexpr int kMaxUsed = 64;

__global__ void router_kernel(const float* __restrict__ logits, int n_tok, int n_expert, int k,
                              float* __restrict__ probs, int32_t* __restrict__ ids, float* __restrict__ weights) {
    const int lane = threadIdx.x & 31;
    const int64_t t = (int64_t)blockIdx.x * kTokensPerBlock + (threadIdx.x >> 5);
    if (t >= n_tok) return;  // warp-uniform
    const float* l = logits + t * n_expert;
    float* pr = probs + t * n_expert;

    // m = max l, first-element semantics of the CPU (m = l[0]; m = l[i] if l[i] > m): NaN
    // entries never win, except that a NaN l[0] makes m NaN.
    float m = -__int_as_float(0x7f800000);
    for (int i = lane; i < n_expert; i += kWarp) m = fmaxf(m, l[i]);
    m = warp_max(m);
    if (l[0] != l[0]) m = l[0];
    float zp = 0.0f;  // lane partial of the canonical sum
    for (int i = lane; i < n_expert; i += kWarp) {
        const float e = canon_exp(l[i] - m);
        pr[i] = e;  // the lane rereads only its own entries below
        zp = zp + e;
    }
    const float Z = warp_tree_sum(zp);
    for (int i = lane; i < n_expert; i += kWarp) pr[i] = canon_div(pr[i], Z);

    // Top-k: k rounds of an arg-max under the CPU's order: numbers by descending value, then
    // NaNs; equal values (and NaNs among themselves) by ascending index. Lane-local candidates
    // are the lane's experts not yet taken (bit j of `taken` is expert lane + 32 j).
    uint32_t taken = 0;
    float S = 0.0f;
    float sel_p[kMaxUsed];
    for (int r = 0; r < k; ++r) {
        float bp = 0.0f;
        int bi = -1;
        for (int j = 0, i = lane; i < n_expert; ++j, i += kWarp) {
            if (taken & (1u << j)) continue;
            const float v = pr[i];
            if (bi < 0 || v > bp || (bp != bp && v == v)) {  // ascending i: ties keep the lower index
                bp = v;
                bi = i;
            }
        }
#pragma unroll
        for (int s = 16; s >= 1; s >>= 1) {
            const float op = __shfl_xor_sync(kFullMask, bp, s);
            const int oi = __shfl_xor_sync(kFullMask, bi, s);
            bool better;
            if (oi < 0) better = false;
            else if (bi < 0) better = true;
            else if (op != op) better = bp != bp && oi < bi;  // NaN beats only a NaN of higher index
            else if (bp != bp) better = true;                 // a number beats NaN
            else better = op > bp || (op == bp && oi < bi);
            if (better) {
                bp = op;
                bi = oi;
            }
        }
        if (bi >= 0 && (bi & 31) == lane) taken |= 1u << (bi >> 5);
        sel_p[r] = bp;
        S = S + bp;
        if (lane == 0) ids[t * k + r] = bi;
    }
    if (lane == 0)
        for (int r = 0; r < k; ++r) weights[t * k + r] = canon_div(sel_p[r], S);
}
}  // namespace

void router_topk_launch(const float* logits, int n_tok, int n_expert, int k, float* probs, int32_t* ids,
                        float* weights, cudaStream_t stream) {
    if (n_expert <= 0 || n_expert > kMaxExpert)
        throw std::invalid_argument("cuda router: n_expert " + std::to_string(n_expert) + " must be in 1..1024");
    if (k <= 0 || k > n_expert || k > kMaxUsed)
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
