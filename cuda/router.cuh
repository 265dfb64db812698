// router.cuh — MoE routing after the router logits (canonical definition, ARCHITECTURE.md 2):
//   m = max l;  e_i = canon_exp(l_i - m);  Z = canon_sum(e) (32-lane rule);  p_i = canon_div(e_i, Z)
//   top-k: the k largest p, ties -> lower index, ranked by descending p
//   S = +0.0f; for r: S = S + p_r;  w_r = canon_div(p_r, S)
#pragma once
#include "cuda/common.cuh"
#include "cuda/cuda-ops.h"

namespace qwen3moe::cuda {

constexpr int kRouterMaxUsed = 64;  // largest k

// One warp routes one token: l [n_expert] logits -> pr [n_expert] probabilities (pr may be
// re-read by the warp: global or shared memory), ids [k], weights [k]. Lane l owns experts
// l, l+32, ... (at most 1024 in total); the top-k selection is k rounds of a warp-wide
// (probability, index) arg-max that prefers the lower index on equal probabilities.
__device__ __forceinline__ void warp_router_topk(const float* l, int n_expert, int k, float* pr, int32_t* ids,
                                                 float* weights) {
    const int lane = threadIdx.x & 31;
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
    float sel_p[kRouterMaxUsed];
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
        if (lane == 0) ids[r] = bi;
    }
    if (lane == 0)
        for (int r = 0; r < k; ++r) weights[r] = canon_div(sel_p[r], S);
}

void router_topk_launch(const float* logits, int n_tok, int n_expert, int k, float* probs, int32_t* ids,
                        float* weights, cudaStream_t stream);

}  // namespace qwen3moe::cuda
