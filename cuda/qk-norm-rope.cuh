// qk-norm-rope.cuh — per-head RMSNorm (attn_q_norm / attn_k_norm over head_dim) followed by
// NEOX RoPE, plus the KV-cache append. Canonical definition:
//   y = (x * canon_rsqrt(canon_div(canon_dot(x, x, hd), hd) + eps)) * w          (per head)
//   with c = cos[pos][i], s = sin[pos][i] (host tables), h = hd / 2, i < h:
//   out[i] = canon_fma(y[i], c, -(y[i+h] * s));  out[i+h] = canon_fma(y[i], s, y[i+h] * c)
// Cache elements are f32 or f16 (canon_f32_to_f16) of the rotated values.
#pragma once
#include "cuda/common.cuh"
#include "cuda/cuda-ops.h"

namespace qwen3moe::cuda {

__device__ __forceinline__ void cache_store(void* cache, bool f16, int64_t i, float v) {
    if (f16)
        static_cast<uint16_t*>(cache)[i] = canon_f32_to_f16(v);
    else
        static_cast<float*>(cache)[i] = v;
}

__device__ __forceinline__ float cache_load(const void* cache, bool f16, int64_t i) {
    return f16 ? canon_f16_to_f32(static_cast<const uint16_t*>(cache)[i]) : static_cast<const float*>(cache)[i];
}

void norm_rope_launch(const NormRopeArgs& args, cudaStream_t stream);
void kv_store_launch(const float* x, const int32_t* pos, int n_tok, int64_t row_len, void* cache,
                     int64_t n_ctx, bool cache_f16, cudaStream_t stream);

}  // namespace qwen3moe::cuda
