// RMSNorm (attn_norm, ffn_norm, output_norm, and per-head q/k norm over head_dim).
#pragma once
#include <cstdint>

namespace qwen3moe {

// Canonical: ss = canon_dot(x, x, n); mean = canon_div(ss, (float)n);
// sc = canon_rsqrt(mean + eps); y[i] = (x[i] * sc) * w[i].  y may alias x.
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);

}  // namespace qwen3moe
