// Causal attention of one query head against the KV cache (f32 or f16 rows).
#pragma once
#include <cstdint>

namespace qwen3moe {

// kq_scale = canon_div(1.0f, canon_sqrt((float)head_dim)).
float attention_kq_scale(int head_dim);

// Scratch for one call (per thread): scores [n_kv], kbuf/vbuf [hd], a_tile/acc [hd].
struct AttnScratch {
    float* scores = nullptr;  // [n_ctx]
    float* kv_row = nullptr;  // [head_dim] one K or V row converted to f32
    float* a_tile = nullptr;  // [head_dim] tile accumulator
};

// out[hd] for query q[hd] over keys t = 0..n_kv-1. K/V rows live at
// k + t*row_stride + head_off (elements of f32, or f16 bits when f16):
//   s_t = canon_dot(q, k_t, hd) * kq_scale; m = max_t s_t; e_t = canon_exp(s_t - m);
//   per tile of kAttnTile positions, sequentially in ascending t from +0.0f:
//     z = z + e_t; a[d] = canon_fma(e_t, v_t[d], a[d]);
//   tiles combined in ascending order from +0.0f: Z = Z + z; A[d] = A[d] + a[d];
//   out[d] = canon_div(A[d], Z).
void attention_head(const float* q, const void* k, const void* v, bool f16, int64_t row_stride,
                    int64_t head_off, int n_kv, int head_dim, float kq_scale, float* out,
                    const AttnScratch& scratch);

}  // namespace qwen3moe
