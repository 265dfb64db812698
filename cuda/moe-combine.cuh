// moe-combine.cuh — expert outputs weighted and summed in rank order, then the residual:
//   moe[d] = +0.0f; for r < k: moe[d] = canon_fma(w_r, y_r[d], moe[d]);  out[d] = res[d] + moe[d]
#pragma once
#include "cuda/common.cuh"

namespace qwen3moe::cuda {
void moe_combine_launch(const float* y, const float* w, const float* residual, int n_tok, int k, int64_t n,
                        float* moe, float* out, cudaStream_t stream);
}  // namespace qwen3moe::cuda
