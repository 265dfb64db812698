// rms-norm-q8k.cu — RMSNorm of each row fused with the Q8K quantisation of the result (the
// decode step runs both back to back on every norm feeding quantised matvecs: one launch
// instead of two). One block of kWarps warps per row: every warp computes the row's scale with
// warp_rms_scale (the same bits in each warp), then warp w writes y for 256-value blocks
// w, w + kWarps, ... with the rms_norm expression (x[i] * sc) * w[i] and quantises each block it
// wrote with warp_quantize_q8k_block (quantize-q8k.cuh) after __syncwarp. y must not alias x
// (other warps still read x while y is written).
#include <stdexcept>
#include <string>

#include "cuda/cuda-ops.h"
#include "cuda/quantize-q8k.cuh"
#include "cuda/rms-norm.cuh"

namespace qwen3moe::cuda {

namespace {
constexpr int kWarps = 8;

__global__ void __launch_bounds__(kWarps * kWarp)
    rms_norm_q8k_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
                        block_q8k* __restrict__ yq, int64_t n, float eps) {
    const int64_t row = blockIdx.x;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const float* xr = x + row * n;
    float* yr = y + row * n;
    const float sc = warp_rms_scale(xr, n, eps);
    const int64_t nb = n / QK_K;
    for (int64_t b = warp; b < nb; b += kWarps) {
        const int64_t o = b * QK_K;
        for (int i = lane; i < QK_K; i += kWarp) yr[o + i] = (xr[o + i] * sc) * w[o + i];
        __syncwarp();  // the block's y values (written by this warp) are visible to all its lanes
        warp_quantize_q8k_block(yr + o, yq + row * nb + b);
    }
}
}  // namespace

void rms_norm_q8k(const float* x, const float* w, float* y, block_q8k* yq, int64_t n_rows, int64_t n, float eps,
                  void* stream) {
    if (n_rows < 0 || n <= 0 || n % QK_K != 0)
        throw std::invalid_argument("cuda rms_norm_q8k: bad shape (" + std::to_string(n_rows) + ", " +
                                    std::to_string(n) + "); n must be a positive multiple of 256");
    if (x == y) throw std::invalid_argument("cuda rms_norm_q8k: y must not alias x");
    if (reinterpret_cast<uintptr_t>(y) % 16 != 0) throw std::invalid_argument("cuda rms_norm_q8k: y must be 16-byte aligned");
    if (n_rows == 0) return;
    rms_norm_q8k_kernel<<<(unsigned)n_rows, kWarps * kWarp, 0, to_stream(stream)>>>(x, w, y, yq, n, eps);
    Q3_CUDA_CHECK_LAUNCH();
}

}  // namespace qwen3moe::cuda
