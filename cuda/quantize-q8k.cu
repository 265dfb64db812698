// quantize-q8k.cu — Q8K activation quantisation, one warp per 256-value block.
#include <stdexcept>
#include <string>

#include "cuda/cuda-ops.h"
#include "cuda/quantize-q8k.cuh"

namespace qwen3moe::cuda {

namespace {
constexpr int kWarpsPerBlock = 8;

__global__ void quantize_q8k_kernel(const float* __restrict__ x, block_q8k* __restrict__ y,
                                    int64_t n_blocks) {
    const int64_t b = (int64_t)blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
    if (b >= n_blocks) return;  // whole warp leaves together
    warp_quantize_q8k_block(x + b * QK_K, y + b);
}
}  // namespace

void quantize_q8k_launch(const float* x, block_q8k* y, int64_t n_rows, int64_t n, cudaStream_t stream) {
    if (n_rows < 0 || n < 0 || n % QK_K != 0)
        throw std::invalid_argument("cuda quantize_q8k: n = " + std::to_string(n) +
                                    " must be a non-negative multiple of 256");
    if (reinterpret_cast<uintptr_t>(x) % 16 != 0)
        throw std::invalid_argument("cuda quantize_q8k: x must be 16-byte aligned");
    const int64_t n_blocks = n_rows * (n / QK_K);
    if (n_blocks == 0) return;
    quantize_q8k_kernel<<<ceil_div_u(n_blocks, kWarpsPerBlock), kWarpsPerBlock * kWarp, 0, stream>>>(
        x, y, n_blocks);
    Q3_CUDA_CHECK_LAUNCH();
}

void quantize_q8k(const float* x, block_q8k* y, int64_t n_rows, int64_t n, void* stream) {
    quantize_q8k_launch(x, y, n_rows, n, to_stream(stream));
}

}  // namespace qwen3moe::cuda
