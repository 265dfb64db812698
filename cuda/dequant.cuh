// dequant.cuh — device dequantisation of one value of a weight row, bit-identical to the
// CPU's dequantize_row (quant/dequant-ref.cpp, which matches PyPI gguf): the same float
// operations in the same order, no FMA (device code is built with -fmad=false):
//   Q4_0: d * (float)(nibble - 8)             Q8_0: (float)q * d
//   Q4_K, Q5_K: (d * (float)sc) * (float)q - dmin * (float)m
//   Q6_K: (d * (float)sc) * (float)(q - 32)   F16/BF16: exact widening; F32: the value.
// Used by matvec-f32act (weights x f32 activations) and embed.
#pragma once
#include "cuda/common.cuh"
#include "quant/blocks.h"
#include "quant/ggml-types.h"

namespace qwen3moe::cuda {

template <uint32_t T> struct Dequant;

template <> struct Dequant<GGML_TYPE_F32> {
    static constexpr int64_t kBlock = 1, kBytes = 4;  // values, bytes per block
    Q3_HDM static float value(const uint8_t* row, int64_t i) {
        return reinterpret_cast<const float*>(row)[i];
    }
};
template <> struct Dequant<GGML_TYPE_F16> {
    static constexpr int64_t kBlock = 1, kBytes = 2;
    Q3_HDM static float value(const uint8_t* row, int64_t i) {
        return f16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
    }
};
template <> struct Dequant<GGML_TYPE_BF16> {
    static constexpr int64_t kBlock = 1, kBytes = 2;
    Q3_HDM static float value(const uint8_t* row, int64_t i) {
        return canon_bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
    }
};
template <> struct Dequant<GGML_TYPE_Q4_0> {
    static constexpr int64_t kBlock = QK4_0, kBytes = sizeof(block_q4_0);
    Q3_HDM static float value(const uint8_t* row, int64_t i) {
        const block_q4_0* b = reinterpret_cast<const block_q4_0*>(row) + i / QK4_0;
        const int l = (int)(i % QK4_0);
        const int q = l < 16 ? (b->qs[l] & 15) : (b->qs[l - 16] >> 4);
        return f16_to_f32(b->d) * (float)(q - 8);
    }
};
template <> struct Dequant<GGML_TYPE_Q8_0> {
    static constexpr int64_t kBlock = QK8_0, kBytes = sizeof(block_q8_0);
    Q3_HDM static float value(const uint8_t* row, int64_t i) {
        const block_q8_0* b = reinterpret_cast<const block_q8_0*>(row) + i / QK8_0;
        return (float)b->qs[i % QK8_0] * f16_to_f32(b->d);
    }
};

// Q4_K / Q5_K value l (0..255) of a block; qh == nullptr for Q4_K.
Q3_HD float dequant_k4_value(uint16_t d16, uint16_t dmin16, const uint8_t* scales,
                                                  const uint8_t* qs, const uint8_t* qh, int l) {
    const int j = l >> 5, p = l & 31;
    uint8_t sc, m;
    k4_scale_min(j, scales, &sc, &m);
    const float ds = f16_to_f32(d16) * (float)sc;
    const float dm = f16_to_f32(dmin16) * (float)m;
    int v = (qs[32 * (j >> 1) + p] >> (4 * (j & 1))) & 15;
    if (qh) v |= ((qh[p] >> j) & 1) << 4;
    return ds * (float)v - dm;
}

template <> struct Dequant<GGML_TYPE_Q4_K> {
    static constexpr int64_t kBlock = QK_K, kBytes = sizeof(block_q4_K);
    Q3_HDM static float value(const uint8_t* row, int64_t i) {
        const block_q4_K* b = reinterpret_cast<const block_q4_K*>(row) + i / QK_K;
        return dequant_k4_value(b->d, b->dmin, b->scales, b->qs, nullptr, (int)(i % QK_K));
    }
};
template <> struct Dequant<GGML_TYPE_Q5_K> {
    static constexpr int64_t kBlock = QK_K, kBytes = sizeof(block_q5_K);
    Q3_HDM static float value(const uint8_t* row, int64_t i) {
        const block_q5_K* b = reinterpret_cast<const block_q5_K*>(row) + i / QK_K;
        return dequant_k4_value(b->d, b->dmin, b->scales, b->qs, b->qh, (int)(i % QK_K));
    }
};
template <> struct Dequant<GGML_TYPE_Q6_K> {
    static constexpr int64_t kBlock = QK_K, kBytes = sizeof(block_q6_K);
    Q3_HDM static float value(const uint8_t* row, int64_t i) {
        const block_q6_K* b = reinterpret_cast<const block_q6_K*>(row) + i / QK_K;
        const int l = (int)(i % QK_K);
        const float ds = f16_to_f32(b->d) * (float)b->scales[l >> 4];
        return ds * (float)(q6k_value(b, l) - 32);
    }
};

// Bytes of a row of n values of type T.
template <uint32_t T> constexpr int64_t dequant_row_bytes(int64_t n) {
    return n / Dequant<T>::kBlock * Dequant<T>::kBytes;
}

// True for the types the device dequantiser handles.
inline bool dequant_supported(uint32_t type) {
    switch (type) {
        case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: case GGML_TYPE_Q4_0:
        case GGML_TYPE_Q8_0: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
            return true;
        default:
            return false;
    }
}

// Calls f.template operator()<T>() for the run-time type (types of dequant_supported).
template <class F> void dispatch_dequant_type(uint32_t type, F&& f) {
    switch (type) {
        case GGML_TYPE_F32: f.template operator()<GGML_TYPE_F32>(); return;
        case GGML_TYPE_F16: f.template operator()<GGML_TYPE_F16>(); return;
        case GGML_TYPE_BF16: f.template operator()<GGML_TYPE_BF16>(); return;
        case GGML_TYPE_Q4_0: f.template operator()<GGML_TYPE_Q4_0>(); return;
        case GGML_TYPE_Q8_0: f.template operator()<GGML_TYPE_Q8_0>(); return;
        case GGML_TYPE_Q4_K: f.template operator()<GGML_TYPE_Q4_K>(); return;
        case GGML_TYPE_Q5_K: f.template operator()<GGML_TYPE_Q5_K>(); return;
        case GGML_TYPE_Q6_K: f.template operator()<GGML_TYPE_Q6_K>(); return;
        default: return;
    }
}

}  // namespace qwen3moe::cuda
