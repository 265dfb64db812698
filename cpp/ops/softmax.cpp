// Canonical softmax: max, shared exp, 32-lane sum, IEEE division.
#include "ops/softmax.h"

#include "ops/canon.h"
#include "ops/vec-ops.h"

namespace qwen3moe {

void softmax_canon(const float* l, float* p, int64_t n) {
    if (n <= 0) return;
    // Rule: m = max; e = canon_exp(l - m); Z = canon_sum (32-lane rule); p = canon_div(e, Z)
    float m = l[0];
    for (int64_t i = 1; i < n; ++i)
        if (l[i] > m) m = l[i];
    vec_ops().exp_sub(l, m, p, n);  // p[i] = canon_exp(l[i] - m)
    const float z = canon_sum_ref(p, n);
    for (int64_t i = 0; i < n; ++i) p[i] = canon_div(p[i], z);
}

}  // namespace qwen3moe
