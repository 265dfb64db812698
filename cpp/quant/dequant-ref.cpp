// dequant-ref.cpp — scalar dequantisation of the supported GGML types.
//
// The result is bit-identical to PyPI gguf's gguf.quants.dequantize (our oracle), so the
// float operations follow gguf-py's order exactly (no FMA; host code is -ffp-contract=off):
//   Q4_0: d * (float)(nibble - 8)           Q8_0: (float)q * d
//   Q4_K, Q5_K: (d * sc) * (float)q - (dmin * m)      (two products, then one subtraction)
//   Q6_K: (d * (float)sc) * (float)(q - 32)
//   F16 / BF16: exact widening (canon_f16_to_f32 / canon_bf16_to_f32); F32: a copy.
// Any other type id throws UnsupportedType naming the type.
#include <cstring>
#include <string>

#include "quant/quant.h"
#include "runtime/errors.h"

namespace qwen3moe {

namespace {

void check_row(uint32_t type, int64_t n) {
    const GGMLTypeTraits* t = ggml_type_traits(type);
    if (!t || !ggml_type_supported(type))
        throw UnsupportedType(std::string("dequantize: unsupported tensor type ") + ggml_type_name(type));
    if (n < 0 || n % t->block_size != 0)
        throw std::invalid_argument(std::string("dequantize: ") + std::to_string(n) +
                                    " values is not a multiple of the " + t->name + " block size " +
                                    std::to_string(t->block_size));
}

void dequant_q4_0(const block_q4_0* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; ++b, y += QK4_0) {
        const float d = canon_f16_to_f32(x[b].d);
        for (int l = 0; l < 16; ++l) {
            y[l] = d * (float)((x[b].qs[l] & 15) - 8);
            y[l + 16] = d * (float)((x[b].qs[l] >> 4) - 8);
        }
    }
}

void dequant_q8_0(const block_q8_0* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; ++b, y += QK8_0) {
        const float d = canon_f16_to_f32(x[b].d);
        for (int l = 0; l < 32; ++l) y[l] = (float)x[b].qs[l] * d;
    }
}

// Shared by Q4_K and Q5_K: qh == nullptr for Q4_K.
void dequant_k4(uint16_t d16, uint16_t dmin16, const uint8_t* scales, const uint8_t* qs,
                const uint8_t* qh, float* y) {
    const float d = canon_f16_to_f32(d16);
    const float dmin = canon_f16_to_f32(dmin16);
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        k4_scale_min(j, scales, &sc, &m);
        const float ds = d * (float)sc;
        const float dm = dmin * (float)m;
        const uint8_t* q = qs + 32 * (j >> 1);
        const int shift = 4 * (j & 1);
        for (int l = 0; l < 32; ++l) {
            int v = (q[l] >> shift) & 15;
            if (qh) v |= ((qh[l] >> j) & 1) << 4;
            y[32 * j + l] = ds * (float)v - dm;
        }
    }
}

void dequant_q6_K(const block_q6_K* x, float* y, int64_t nb) {
    for (int64_t b = 0; b < nb; ++b, y += QK_K) {
        const float d = canon_f16_to_f32(x[b].d);
        for (int j = 0; j < 16; ++j) {
            const float ds = d * (float)x[b].scales[j];
            for (int l = 0; l < 16; ++l) y[16 * j + l] = ds * (float)(q6k_value(&x[b], 16 * j + l) - 32);
        }
    }
}

}  // namespace

void dequantize_row(uint32_t type, const void* src, float* dst, int64_t n) {
    check_row(type, n);
    switch (type) {
        case GGML_TYPE_F32:
            if (n) std::memcpy(dst, src, (size_t)n * sizeof(float));
            return;
        case GGML_TYPE_F16: {
            const uint16_t* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = canon_f16_to_f32(h[i]);
            return;
        }
        case GGML_TYPE_BF16: {
            const uint16_t* h = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = canon_bf16_to_f32(h[i]);
            return;
        }
        case GGML_TYPE_Q4_0:
            dequant_q4_0(static_cast<const block_q4_0*>(src), dst, n / QK4_0);
            return;
        case GGML_TYPE_Q8_0:
            dequant_q8_0(static_cast<const block_q8_0*>(src), dst, n / QK8_0);
            return;
        case GGML_TYPE_Q4_K: {
            const block_q4_K* x = static_cast<const block_q4_K*>(src);
            for (int64_t b = 0; b < n / QK_K; ++b)
                dequant_k4(x[b].d, x[b].dmin, x[b].scales, x[b].qs, nullptr, dst + b * QK_K);
            return;
        }
        case GGML_TYPE_Q5_K: {
            const block_q5_K* x = static_cast<const block_q5_K*>(src);
            for (int64_t b = 0; b < n / QK_K; ++b)
                dequant_k4(x[b].d, x[b].dmin, x[b].scales, x[b].qs, x[b].qh, dst + b * QK_K);
            return;
        }
        case GGML_TYPE_Q6_K:
            dequant_q6_K(static_cast<const block_q6_K*>(src), dst, n / QK_K);
            return;
        default:
            break;
    }
    throw UnsupportedType(std::string("dequantize: unsupported tensor type ") + ggml_type_name(type));
}

}  // namespace qwen3moe
