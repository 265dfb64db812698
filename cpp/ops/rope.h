// RoPE, NEOX rotation (pairs i and i + hd/2 for i < hd/2), with host-built tables.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qwen3moe {

// cos/sin tables, flat and uploadable: cos at [pos * half + i], sin at [(n_pos + pos) * half + i].
struct RopeTable {
    int n_pos = 0;             // positions covered (n_ctx)
    int half = 0;              // head_dim / 2
    std::vector<float> data;   // [2][n_pos][half]: cos block, then sin block
    const float* cos_row(int pos) const { return data.data() + (size_t)pos * half; }
    const float* sin_row(int pos) const { return data.data() + ((size_t)n_pos + pos) * half; }
};

// Built once on the host in double: theta = pos * pow(freq_base, -2.0*i/hd), then
// cos(theta), sin(theta) rounded to float.
RopeTable build_rope_table(int n_pos, int head_dim, double freq_base);

// One head: y[i] = canon_fma(x[i], c, -(x[i+h]*s)); y[i+h] = canon_fma(x[i], s, x[i+h]*c)
// with c = cos_row[i], s = sin_row[i], h = hd/2.  y may alias x.
void rope_neox(const float* x, float* y, int head_dim, const float* cos_row, const float* sin_row);

}  // namespace qwen3moe
