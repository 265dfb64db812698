// rms-norm.cu — RMSNorm of each row, one warp per row (see rms-norm.cuh).
#include <stdexcept>
#include <string>

#include "cuda/cuda-ops.h"
#include "cuda/rms-norm.cuh"

namespace qwen3moe::cuda {

namespace {
constexpr int kRowsPerBlock = 4;

__global__ void rms_norm_kernel(const float* x, const float* __restrict__ w, float* y,
                                int64_t n_rows, int64_t n, float eps) {
    const int64_t row = (int64_t)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
    if (row >= n_rows) return;  // warp-uniform
    const float* xr = x + row * n;
    float* yr = y + row * n;
    const float sc = warp_rms_scale(xr, n, eps);
    // Each lane rewrites only the elements it read (y may alias x).
    for (int64_t i = threadIdx.x & 31; i < n; i += kWarp) yr[i] = (xr[i] * sc) * w[i];
}
}  // namespace

void rms_norm_launch(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps,
                     cudaStream_t stream) {
    if (n_rows < 0 || n <= 0)
        throw std::invalid_argument("cuda rms_norm: bad shape (" + std::to_string(n_rows) + ", " +
                                    std::to_string(n) + ")");
    if (n_rows == 0) return;
    rms_norm_kernel<<<ceil_div_u(n_rows, kRowsPerBlock), kRowsPerBlock * kWarp, 0, stream>>>(
        x, w, y, n_rows, n, eps);
    Q3_CUDA_CHECK_LAUNCH();
}

void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps, void* stream) {
    rms_norm_launch(x, w, y, n_rows, n, eps, to_stream(stream));
}

}  // namespace qwen3moe::cuda
