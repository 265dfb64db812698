// attention.cuh — causal GQA attention over the KV cache, canonical definition
// (ARCHITECTURE.md section 2, ops/canon.h): for query token t at position p, head h, kv head
// g = h / (n_head / n_head_kv), keys 0..p:
//   s_j = canon_dot(q, k_j, hd) * kq_scale,  kq_scale = canon_div(1, canon_sqrt((float)hd))
//   m = max s_j;  e_j = canon_exp(s_j - m)
//   tiles of kAttnTile positions: z = z + e_j, a[d] = canon_fma(e_j, v_j[d], a[d]) ascending
//   from +0.0f inside a tile; tiles combined ascending from +0.0f: Z = Z + z, A[d] = A[d] + a[d]
//   out[d] = canon_div(A[d], Z)
#pragma once
#include "cuda/common.cuh"
#include "cuda/cuda-ops.h"

namespace qwen3moe::cuda {

void attention_launch(const AttentionArgs& args, cudaStream_t stream);

}  // namespace qwen3moe::cuda
