// RMSNorm: one canonical definition used for every norm of the model.
#include "ops/rms-norm.h"

#include "ops/canon.h"
#include "ops/vec-ops.h"

namespace qwen3moe {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
    // Rule: ss = canon_dot(x,x,n); mean = canon_div(ss,(float)n); sc = canon_rsqrt(mean + eps);
    //       y[i] = (x[i]*sc)*w[i]
    // (written out in vec-ops.cpp rms_norm_ref; SIMD twins in ops/vec-ops-x86.h)
    vec_ops().rms_norm(x, w, y, n, eps);
}

}  // namespace qwen3moe
