// swiglu.cu — elementwise canon_silu(g) * u, grid-stride.
#include <stdexcept>

#include "cuda/cuda-ops.h"
#include "cuda/swiglu.cuh"

namespace qwen3moe::cuda {

namespace {
__global__ void swiglu_kernel(const float* g, const float* u, float* s, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        s[i] = canon_silu(g[i]) * u[i];
}
}  // namespace

void swiglu_launch(const float* g, const float* u, float* s, int64_t n, cudaStream_t stream) {
    if (n < 0) throw std::invalid_argument("cuda swiglu: negative length");
    if (n == 0) return;
    const unsigned blocks = ceil_div_u(n, 256) < 4096 ? ceil_div_u(n, 256) : 4096;
    swiglu_kernel<<<blocks, 256, 0, stream>>>(g, u, s, n);
    Q3_CUDA_CHECK_LAUNCH();
}

void swiglu(const float* g, const float* u, float* s, int64_t n, void* stream) {
    swiglu_launch(g, u, s, n, to_stream(stream));
}

}  // namespace qwen3moe::cuda
