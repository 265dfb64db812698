// SwiGLU of one expert: s[i] = canon_silu(g[i]) * u[i].
#pragma once
#include <cstdint>

namespace qwen3moe {

void swiglu(const float* g, const float* u, float* s, int64_t n);

}  // namespace qwen3moe
