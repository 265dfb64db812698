// RMSNorm: one canonical definition used for every norm of the model.
#include "ops/rms-norm.h"

#include "ops/canon.h"
#include "quant/quant.h"

namespace qwen3moe {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
    // Rule: ss = canon_dot(x,x,n); mean = canon_div(ss,(float)n); sc = canon_rsqrt(mean + eps);
    //       y[i] = (x[i]*sc)*w[i]
    const float ss = canon_dot(x, x, n);
    const float mean = canon_div(ss, (float)n);
    const float sc = canon_rsqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * sc) * w[i];
}

}  // namespace qwen3moe
