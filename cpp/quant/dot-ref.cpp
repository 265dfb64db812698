// dot-ref.cpp — scalar reference kernels: the Q8K activation quantiser, the weight x Q8K
// canonical dots (integer sums computed the obvious way, float part from dot-canon.h) and
// canon_dot (= canon_dot_ref). The SIMD tables in dot-avx2.cpp / dot-avx512.cpp must return
// exactly these bits; tests compare them on random and extreme data.
#include "quant/dot-canon.h"
#include "quant/dot-kernels.h"
#include "quant/ggml-types.h"

namespace qwen3moe {

// Q8K (quant.h): amax = max |x| (NaN ignored); amax == 0 -> d = 0, q = 0; otherwise
// iscale = 127/amax, q = clamp(rint(x*iscale), -127, 127) with NaN -> 0, d = amax/127.
void quantize_block_q8k_ref(const float* x, block_q8k* y) {
    float amax = 0.0f;
    for (int i = 0; i < QK_K; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) amax = ax;
    }
    if (amax == 0.0f) {
        y->d = 0.0f;
        for (int i = 0; i < QK_K; ++i) y->qs[i] = 0;
        for (int k = 0; k < QK_K / 16; ++k) y->bsums[k] = 0;
        return;
    }
    const float iscale = canon_div(127.0f, amax);
    for (int i = 0; i < QK_K; ++i) {
        float r = canon_rint(x[i] * iscale);
        if (r != r) r = 0.0f;
        if (r > 127.0f) r = 127.0f;
        if (r < -127.0f) r = -127.0f;
        y->qs[i] = (int8_t)(int)r;
    }
    for (int k = 0; k < QK_K / 16; ++k) {
        int s = 0;
        for (int i = 0; i < 16; ++i) s += y->qs[16 * k + i];
        y->bsums[k] = (int16_t)s;
    }
    y->d = canon_div(amax, 127.0f);
}

namespace {

void quantize_q8k_ref(const float* x, block_q8k* y, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; ++b) quantize_block_q8k_ref(x + b * QK_K, y + b);
}

// ---- per activation block: the exact integer sums, then the canonical float term -------

float block_q4_K_ref(const block_q4_K& w, const block_q8k& a) {
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        k4_scale_min(j, w.scales, &sc, &m);
        int32_t s = 0;
        for (int l = 0; l < 32; ++l) s += ((w.qs[32 * (j >> 1) + l] >> (4 * (j & 1))) & 15) * a.qs[32 * j + l];
        isum += sc * s;
        msum += m * (a.bsums[2 * j] + a.bsums[2 * j + 1]);
    }
    return canon_block_q4k(a.d, canon_f16_to_f32(w.d), canon_f16_to_f32(w.dmin), isum, msum);
}

float block_q5_K_ref(const block_q5_K& w, const block_q8k& a) {
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        k4_scale_min(j, w.scales, &sc, &m);
        int32_t s = 0;
        for (int l = 0; l < 32; ++l) {
            const int q = ((w.qs[32 * (j >> 1) + l] >> (4 * (j & 1))) & 15) | (((w.qh[l] >> j) & 1) << 4);
            s += q * a.qs[32 * j + l];
        }
        isum += sc * s;
        msum += m * (a.bsums[2 * j] + a.bsums[2 * j + 1]);
    }
    return canon_block_q4k(a.d, canon_f16_to_f32(w.d), canon_f16_to_f32(w.dmin), isum, msum);
}

float block_q6_K_ref(const block_q6_K& w, const block_q8k& a) {
    int32_t isum = 0;
    for (int j = 0; j < 16; ++j) {
        int32_t s = 0;
        for (int l = 0; l < 16; ++l) s += (q6k_value(&w, 16 * j + l) - 32) * a.qs[16 * j + l];
        isum += w.scales[j] * s;
    }
    return canon_block_q6k(a.d, canon_f16_to_f32(w.d), isum);
}

float block_q8_0_ref(const block_q8_0* w, const block_q8k& a) {  // w: the 8 weight blocks
    float dk[8];
    int32_t isum[8];
    for (int k = 0; k < 8; ++k) {
        dk[k] = canon_f16_to_f32(w[k].d);
        int32_t s = 0;
        for (int l = 0; l < 32; ++l) s += w[k].qs[l] * a.qs[32 * k + l];
        isum[k] = s;
    }
    return canon_block_q8_0(a.d, dk, isum);
}

float block_q4_0_ref(const block_q4_0* w, const block_q8k& a) {
    float dk[8];
    int32_t isum[8];
    for (int k = 0; k < 8; ++k) {
        dk[k] = canon_f16_to_f32(w[k].d);
        int32_t s = 0;
        for (int l = 0; l < 16; ++l) {
            s += ((w[k].qs[l] & 15) - 8) * a.qs[32 * k + l];
            s += ((w[k].qs[l] >> 4) - 8) * a.qs[32 * k + 16 + l];
        }
        isum[k] = s;
    }
    return canon_block_q8_0(a.d, dk, isum);
}

float row_ref(uint32_t type, const void* w_row, const block_q8k* a, int64_t nb) {
    float p[kCanonLanes];
    canon_row_init(p);
    for (int64_t b = 0; b < nb; ++b) {
        float c = 0.0f;
        switch (type) {
            case GGML_TYPE_Q4_K: c = block_q4_K_ref(static_cast<const block_q4_K*>(w_row)[b], a[b]); break;
            case GGML_TYPE_Q5_K: c = block_q5_K_ref(static_cast<const block_q5_K*>(w_row)[b], a[b]); break;
            case GGML_TYPE_Q6_K: c = block_q6_K_ref(static_cast<const block_q6_K*>(w_row)[b], a[b]); break;
            case GGML_TYPE_Q8_0: c = block_q8_0_ref(static_cast<const block_q8_0*>(w_row) + 8 * b, a[b]); break;
            case GGML_TYPE_Q4_0: c = block_q4_0_ref(static_cast<const block_q4_0*>(w_row) + 8 * b, a[b]); break;
            default: break;  // validated by the dispatcher
        }
        canon_row_add(p, b, c);
    }
    return canon_tree32(p);
}

void dot_q8k_ref(uint32_t type, const void* w_row, const block_q8k* a, int64_t a_stride, int n_tok,
                 int64_t n, float* out, int64_t out_stride) {
    for (int t = 0; t < n_tok; ++t) out[t * out_stride] = row_ref(type, w_row, a + t * a_stride, n / QK_K);
}

float canon_dot_scalar(const float* a, const float* b, int64_t n) { return canon_dot_ref(a, b, n); }

void f16_to_f32_scalar(const uint16_t* h, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = canon_f16_to_f32(h[i]);
}

void axpy_scalar(float a, const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = canon_fma(a, x[i], y[i]);
}

void swiglu_scalar(const float* g, const float* u, float* s, int64_t n) {
    for (int64_t i = 0; i < n; ++i) s[i] = canon_silu(g[i]) * u[i];
}

void dot_q8k_rows1_ref(uint32_t type, const uint8_t* w, size_t row_bytes, int64_t n_rows, const block_q8k* a,
                       int64_t n, float* out, int64_t prefetch) {
    rows1_loop(w, row_bytes, n_rows, prefetch,
               [&](int64_t r) { dot_q8k_ref(type, w + (size_t)r * row_bytes, a, 0, 1, n, out + r, 0); });
}

}  // namespace

const DotKernels kDotKernelsRef = {"scalar",         dot_q8k_ref,  dot_q8k_rows1_ref, canon_dot_scalar, quantize_q8k_ref,
                                   axpy_scalar, swiglu_scalar,    f16_to_f32_scalar};

}  // namespace qwen3moe
