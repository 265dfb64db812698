// RoPE NEOX and its table builder (the only place the rotation angles are computed).
#include "ops/rope.h"

#include <cmath>

#include "ops/canon.h"
#include "ops/vec-ops.h"

namespace qwen3moe {

RopeTable build_rope_table(int n_pos, int head_dim, double freq_base) {
    // Rule: theta = pos * pow(freq_base, -2.0*i/hd) in double, cos/sin rounded to float, once.
    RopeTable t;
    t.n_pos = n_pos;
    t.half = head_dim / 2;
    t.data.assign((size_t)2 * n_pos * t.half, 0.0f);
    std::vector<double> inv(t.half);
    for (int i = 0; i < t.half; ++i) inv[i] = std::pow(freq_base, -2.0 * i / head_dim);
    for (int p = 0; p < n_pos; ++p) {
        float* c = t.data.data() + (size_t)p * t.half;
        float* s = t.data.data() + ((size_t)n_pos + p) * t.half;
        for (int i = 0; i < t.half; ++i) {
            const double theta = (double)p * inv[i];
            c[i] = (float)std::cos(theta);
            s[i] = (float)std::sin(theta);
        }
    }
    return t;
}

void rope_neox(const float* x, float* y, int head_dim, const float* cos_row, const float* sin_row) {
    // Rule: y[i] = canon_fma(x[i], c, -(x[i+h]*s)); y[i+h] = canon_fma(x[i], s, x[i+h]*c)
    // (written out in vec-ops.cpp rope_neox_ref; SIMD twins in ops/vec-ops-x86.h)
    vec_ops().rope_neox(x, y, head_dim, cos_row, sin_row);
}

}  // namespace qwen3moe
