// router.cuh — MoE routing after the router logits (canonical definition, ARCHITECTURE.md 2):
//   m = max l;  e_i = canon_exp(l_i - m);  Z = canon_sum(e) (32-lane rule);  p_i = canon_div(e_i, Z)
//   top-k: the k largest p, ties -> lower index, ranked by descending p
//   S = +0.0f; for r: S = S + p_r;  w_r = canon_div(p_r, S)
#pragma once
#include "cuda/common.cuh"
#include "cuda/cuda-ops.h"

namespace qwen3moe::cuda {

constexpr int kRouterMaxUsed = 64;  // largest k

// The order of top-k as one 64-bit key per expert, larger = earlier: numbers by descending
// value (-0.0f and +0.0f equal), then NaNs; equal keys by ascending index (the low word is
// ~index). Expert i's rank (how many experts come before it) is the count of larger keys.
__device__ __forceinline__ unsigned long long router_order_key(float p, int i) {
    uint32_t b = __float_as_uint(p);
    if (p == 0.0f) b = 0u;  // -0.0f ties with +0.0f
    const uint32_t key = p != p ? 0u : (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // numbers > 0
    return ((unsigned long long)key << 32) | (unsigned long long)(~(uint32_t)i);
}

// One block routes one token (every thread calls it; blockDim.x a multiple of 32, at most
// 1024): m = max l by fmaxf (exact in any order; NaN entries never win, except that a NaN l[0]
// makes m NaN, the CPU's first-element semantics); e_i = canon_exp(l_i - m); Z from the lane
// partials of the canonical sum (warp 0: lane l adds e_l, e_{l+32}, ... in ascending order
// from +0.0f) and the warp tree; p_i = canon_div(e_i, Z). Then each expert's rank under the
// top-k order is counted in parallel (a thread per expert; before, k serial arg-max rounds in
// one warp took 10.9 us of the decode router's 15 on an H200), and thread 0 forms S and the
// weights in rank order. l: n_expert logits (shared memory); pr: n_expert
// probabilities out (shared); key_sh: n_expert keys, sel_sh: k, red_sh: blockDim.x / 32 + 1
// floats of shared scratch. ids / weights: k each (any memory). Ends with a block barrier.
__device__ __forceinline__ void block_router_topk(const float* l, int n_expert, int k, float* pr,
                                                  unsigned long long* key_sh, float* sel_sh, float* red_sh,
                                                  int32_t* ids, float* weights) {
    const int tid = threadIdx.x, nt = blockDim.x, lane = tid & 31, warp = tid >> 5, nw = nt >> 5;
    float m = -__int_as_float(0x7f800000);
    for (int i = tid; i < n_expert; i += nt) m = fmaxf(m, l[i]);
    m = warp_max(m);
    if (lane == 0) red_sh[warp] = m;
    __syncthreads();
    m = red_sh[0];
    for (int w = 1; w < nw; ++w) m = fmaxf(m, red_sh[w]);
    if (l[0] != l[0]) m = l[0];
    for (int i = tid; i < n_expert; i += nt) pr[i] = canon_exp(l[i] - m);
    __syncthreads();
    if (warp == 0) {
        float zp = 0.0f;  // lane partial of the canonical sum
        for (int i = lane; i < n_expert; i += kWarp) zp = zp + pr[i];
        const float Z = warp_tree_sum(zp);
        if (lane == 0) red_sh[nw] = Z;
    }
    __syncthreads();
    const float Z = red_sh[nw];
    for (int i = tid; i < n_expert; i += nt) {
        const float p = canon_div(pr[i], Z);
        pr[i] = p;
        key_sh[i] = router_order_key(p, i);
    }
    __syncthreads();
    for (int i = tid; i < n_expert; i += nt) {
        const unsigned long long ki = key_sh[i];
        int rank = 0;
#pragma unroll 8
        for (int j = 0; j < n_expert; ++j) rank += key_sh[j] > ki ? 1 : 0;  // keys are distinct
        if (rank < k) {
            ids[rank] = i;
            sel_sh[rank] = pr[i];
        }
    }
    __syncthreads();
    if (tid == 0) {
        float S = 0.0f;
        for (int r = 0; r < k; ++r) S = S + sel_sh[r];
        for (int r = 0; r < k; ++r) weights[r] = canon_div(sel_sh[r], S);
    }
    __syncthreads();
}

void router_topk_launch(const float* logits, int n_tok, int n_expert, int k, float* probs, int32_t* ids,
                        float* weights, cudaStream_t stream);

}  // namespace qwen3moe::cuda
