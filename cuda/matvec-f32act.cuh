// matvec-f32act.cuh — weight rows x f32 activations: out = canon_dot(dequantised row, x),
// the f32 reference mode and the path of F32/F16/BF16 weights (router, any float tensor).
// One warp per row: lane l accumulates canon_fma(w[i], x[i], p) for i = l, l+32, ...
// (each value dequantised on the fly, dequant.cuh), then the canonical warp tree.
#pragma once
#include "cuda/common.cuh"
#include "cuda/cuda-ops.h"
#include "cuda/dequant.cuh"

namespace qwen3moe::cuda {

// The lane's values are fetched 16 at a time before they are used (independent loads in
// flight together instead of one dependent round trip per value); the fma order is unchanged.
template <uint32_t T>
__device__ __forceinline__ float warp_row_dot_f32act(const uint8_t* wrow, const float* x, int64_t n) {
    constexpr int kBatch = 16;
    const int lane = threadIdx.x & (kWarp - 1);
    float p = 0.0f;
    int64_t i0 = lane;
    for (; i0 + (int64_t)(kBatch - 1) * kWarp < n; i0 += (int64_t)kBatch * kWarp) {
        float wv[kBatch], xv[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            wv[u] = Dequant<T>::value(wrow, i0 + (int64_t)u * kWarp);
            xv[u] = x[i0 + (int64_t)u * kWarp];
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) p = canon_fma(wv[u], xv[u], p);
    }
    for (int64_t i = i0; i < n; i += kWarp) p = canon_fma(Dequant<T>::value(wrow, i), x[i], p);
    return warp_tree_sum(p);
}

void matvec_f32act_launch(const MatvecArgs& args, const float* x, cudaStream_t stream);

}  // namespace qwen3moe::cuda
