// add.cuh — c = a + b elementwise (residual adds are plain IEEE additions).
#pragma once
#include "cuda/common.cuh"

namespace qwen3moe::cuda {
void add_launch(const float* a, const float* b, float* c, int64_t n, cudaStream_t stream);
}  // namespace qwen3moe::cuda
