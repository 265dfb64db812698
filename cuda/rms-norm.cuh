// rms-norm.cuh — RMSNorm, canonical definition (ops/canon.h, ARCHITECTURE.md section 2):
//   ss = canon_dot(x, x, n); mean = canon_div(ss, (float)n); sc = canon_rsqrt(mean + eps);
//   y[i] = (x[i] * sc) * w[i].
// One warp per row. warp_rms_scale is shared with the per-head norm (qk-norm-rope.cu).
#pragma once
#include "cuda/common.cuh"

namespace qwen3moe::cuda {

// The scale canon_rsqrt(canon_div(canon_dot(x, x, n), n) + eps) computed by one warp.
__device__ __forceinline__ float warp_rms_scale(const float* x, int64_t n, float eps) {
    const float ss = warp_canon_dot(x, x, n);
    const float mean = canon_div(ss, (float)n);
    return canon_rsqrt(mean + eps);
}

void rms_norm_launch(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps,
                     cudaStream_t stream);

}  // namespace qwen3moe::cuda
