// swiglu.cuh — s = canon_silu(g) * u elementwise (expert hidden activation).
#pragma once
#include "cuda/common.cuh"

namespace qwen3moe::cuda {
void swiglu_launch(const float* g, const float* u, float* s, int64_t n, cudaStream_t stream);
}  // namespace qwen3moe::cuda
