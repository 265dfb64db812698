// SwiGLU with the shared silu (x / (1 + canon_exp(-x))).
#include "ops/swiglu.h"

#include "ops/canon.h"

namespace qwen3moe {

void swiglu(const float* g, const float* u, float* s, int64_t n) {
    // Rule: s[i] = canon_silu(g[i]) * u[i]
    for (int64_t i = 0; i < n; ++i) s[i] = canon_silu(g[i]) * u[i];
}

}  // namespace qwen3moe
