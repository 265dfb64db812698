// SwiGLU with the shared silu (x / (1 + canon_exp(-x))); the loop runs in the quant dispatcher
// (scalar or AVX2/FMA, identical bits).
#include "ops/swiglu.h"

#include "ops/canon.h"
#include "quant/quant.h"

namespace qwen3moe {

void swiglu(const float* g, const float* u, float* s, int64_t n) {
    // Rule: s[i] = canon_silu(g[i]) * u[i]
    // (canon_swiglu: the scalar loop, or its SIMD twin with the same bits)
    canon_swiglu(g, u, s, n);
}

}  // namespace qwen3moe
