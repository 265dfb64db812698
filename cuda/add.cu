// add.cu — elementwise a + b, grid-stride (c may alias a or b).
#include <stdexcept>

#include "cuda/add.cuh"
#include "cuda/cuda-ops.h"

namespace qwen3moe::cuda {

namespace {
__global__ void add_kernel(const float* a, const float* b, float* c, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        c[i] = a[i] + b[i];
}
}  // namespace

void add_launch(const float* a, const float* b, float* c, int64_t n, cudaStream_t stream) {
    if (n < 0) throw std::invalid_argument("cuda add: negative length");
    if (n == 0) return;
    const unsigned blocks = ceil_div_u(n, 256) < 4096 ? ceil_div_u(n, 256) : 4096;
    add_kernel<<<blocks, 256, 0, stream>>>(a, b, c, n);
    Q3_CUDA_CHECK_LAUNCH();
}

void add(const float* a, const float* b, float* c, int64_t n, void* stream) { add_launch(a, b, c, n, to_stream(stream)); }

}  // namespace qwen3moe::cuda
