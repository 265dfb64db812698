// Attention of one query head: canonical dot scores, shared exp, kAttnTile-tiled accumulation
// (the split-K friendly order a CUDA kernel can reproduce exactly).
#include "ops/attention.h"

#include "ops/canon.h"
#include "ops/vec-ops.h"
#include "quant/quant.h"

namespace qwen3moe {

namespace {
inline const float* load_row(const void* base, bool f16, int64_t off, int hd, float* buf) {
    if (!f16) return static_cast<const float*>(base) + off;
    canon_f16_to_f32_row(static_cast<const uint16_t*>(base) + off, buf, hd);  // F16C where available
    return buf;
}
}  // namespace

float attention_kq_scale(int head_dim) { return canon_div(1.0f, canon_sqrt((float)head_dim)); }

void attention_head(const float* q, const void* k, const void* v, bool f16, int64_t row_stride,
                    int64_t head_off, int n_kv, int head_dim, float kq_scale, float* out,
                    const AttnScratch& sc) {
    vec_ops().attention_head(q, k, v, f16, row_stride, head_off, n_kv, head_dim, kq_scale, out, sc);
}

// The definition, executed as written (the scalar table; the SIMD tables reproduce its bits).
void attention_head_ref(const float* q, const void* k, const void* v, bool f16, int64_t row_stride,
                        int64_t head_off, int n_kv, int head_dim, float kq_scale, float* out,
                        const AttnScratch& sc) {
    const int hd = head_dim;
    // Rule: s_t = canon_dot(q, k_t, hd) * kq_scale; m = max_t s_t
    float m = 0.0f;
    for (int t = 0; t < n_kv; ++t) {
        const float* kt = load_row(k, f16, (int64_t)t * row_stride + head_off, hd, sc.kv_row);
        const float s = canon_dot(q, kt, hd) * kq_scale;
        sc.scores[t] = s;
        if (t == 0 || s > m) m = s;
    }
    // Rule: e_t = canon_exp(s_t - m)
    for (int t = 0; t < n_kv; ++t) sc.scores[t] = canon_exp(sc.scores[t] - m);
    // Rule: tiles of kAttnTile positions; inside a tile, ascending t from +0.0f:
    //   z = z + e_t; a[d] = canon_fma(e_t, v_t[d], a[d]);
    // tiles combined in ascending tile order from +0.0f: Z = Z + z; A[d] = A[d] + a[d].
    float zsum = 0.0f;
    for (int d = 0; d < hd; ++d) out[d] = 0.0f;  // A
    for (int t0 = 0; t0 < n_kv; t0 += kAttnTile) {
        const int t1 = t0 + kAttnTile < n_kv ? t0 + kAttnTile : n_kv;
        float z = 0.0f;
        float* a = sc.a_tile;
        for (int d = 0; d < hd; ++d) a[d] = 0.0f;
        for (int t = t0; t < t1; ++t) {
            const float e = sc.scores[t];
            const float* vt = load_row(v, f16, (int64_t)t * row_stride + head_off, hd, sc.kv_row);
            z = z + e;
            canon_axpy(e, vt, a, hd);  // a[d] = canon_fma(e, vt[d], a[d])
        }
        zsum = zsum + z;
        for (int d = 0; d < hd; ++d) out[d] = out[d] + a[d];
    }
    // Rule: out[d] = canon_div(A[d], Z)
    for (int d = 0; d < hd; ++d) out[d] = canon_div(out[d], zsum);
}

}  // namespace qwen3moe
