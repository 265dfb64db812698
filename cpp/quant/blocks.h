// blocks.h — on-disk GGUF block layouts and our Q8K activation block, shared by C++ and CUDA.
//
// Plain structs only (no std containers, no constructors) so .cu files can include this and
// reinterpret raw tensor bytes. f16 fields are stored as uint16_t bit patterns and converted
// with canon_f16_to_f32 (ops/canon.h); the x86 SIMD kernels use F16C, which is the same exact
// conversion for every non-NaN value. Sizes are asserted against the GGUF format (ggml-common.h
// in llama.cpp defines the same layouts). The inline helpers are `Q3_HD` (internal
// linkage), so no out-of-line copy compiled with AVX-512 flags can leak into baseline code.
//
// Value order inside the K-quant blocks (as gguf-py and ggml dequantise them):
//  * Q4_K: qs is 4 chunks of 32 bytes; chunk c holds sub-block 2c in its low nibbles and
//    sub-block 2c+1 in its high nibbles (value 32*(2c)+l = qs[32c+l] & 15).
//  * Q5_K: as Q4_K for the low 4 bits; bit j of qh[l] is the 5th bit of value 32*j+l.
//  * Q6_K: two halves of 128 values; value 128h + 32s + l (s = 0..3, l = 0..31) is
//    ((ql[64h + 32(s&1) + l] >> 4(s>>1)) & 15) | (((qh[32h + l] >> 2s) & 3) << 4), stored
//    +32 (q6k_value below); scales[j] covers values 16j..16j+15.
//  * Q4_0: value l = (qs[l] & 15) - 8, value 16+l = (qs[l] >> 4) - 8.
#pragma once
#include <cstdint>

#include "ops/canon.h"

namespace qwen3moe {

constexpr int QK4_0 = 32;    // values per Q4_0 block
constexpr int QK8_0 = 32;    // values per Q8_0 block
constexpr int QK_K = 256;    // values per K-quant super-block (and per Q8K activation block)
constexpr int K_SCALE_SIZE = 12;  // bytes of packed 6-bit scales/mins in Q4_K/Q5_K

struct block_q4_0 {
    uint16_t d;       // f16 scale
    uint8_t qs[16];   // [32] 4-bit values, two per byte (see header comment)
};
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 must be 18 bytes");

struct block_q8_0 {
    uint16_t d;       // f16 scale
    int8_t qs[32];    // [32] signed 8-bit values
};
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must be 34 bytes");

struct block_q4_K {
    uint16_t d;                      // f16 super-block scale for the 6-bit sub-block scales
    uint16_t dmin;                   // f16 super-block scale for the 6-bit sub-block mins
    uint8_t scales[K_SCALE_SIZE];    // [8 scales + 8 mins] x 6 bits, packed (k4_scale_min)
    uint8_t qs[QK_K / 2];            // [256] 4-bit values
};
static_assert(sizeof(block_q4_K) == 144, "block_q4_K must be 144 bytes");

struct block_q5_K {
    uint16_t d;                      // f16 super-block scale for the sub-block scales
    uint16_t dmin;                   // f16 super-block scale for the sub-block mins
    uint8_t scales[K_SCALE_SIZE];    // [8 scales + 8 mins] x 6 bits, packed (k4_scale_min)
    uint8_t qh[QK_K / 8];            // [256] 5th bits: bit j of qh[l] belongs to value 32j+l
    uint8_t qs[QK_K / 2];            // [256] low 4 bits, laid out as in Q4_K
};
static_assert(sizeof(block_q5_K) == 176, "block_q5_K must be 176 bytes");

struct block_q6_K {
    uint8_t ql[QK_K / 2];     // [256] low 4 bits
    uint8_t qh[QK_K / 4];     // [256] high 2 bits
    int8_t scales[QK_K / 16]; // [16] signed 8-bit scales, one per 16 values
    uint16_t d;               // f16 super-block scale
};
static_assert(sizeof(block_q6_K) == 210, "block_q6_K must be 210 bytes");

// Activation block of the numerics contract (one format for CPU and CUDA).
struct block_q8k {
    float d;                // scale: value = d * qs[i]  (amax / 127, or 0 for an all-zero block)
    int8_t qs[QK_K];        // [256] quantised values in -127..127
    int16_t bsums[QK_K / 16];  // [16] sums of qs[16k .. 16k+15]
};
static_assert(sizeof(block_q8k) == 292, "block_q8k must be 292 bytes");

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K `scales[12]` (GGUF layout):
//   bytes 0-3: low 6 bits = scale j (j<4), top 2 bits = high bits of scale j+4
//   bytes 4-7: low 6 bits = min j (j<4),   top 2 bits = high bits of min j+4
//   bytes 8-11: low nibble = low 4 bits of scale j+4, high nibble = low 4 bits of min j+4
Q3_HD void k4_scale_min(int j, const uint8_t* scales, uint8_t* sc, uint8_t* m) {
    if (j < 4) {
        *sc = (uint8_t)(scales[j] & 63);
        *m = (uint8_t)(scales[j + 4] & 63);
    } else {
        *sc = (uint8_t)((scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4));
        *m = (uint8_t)((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
    }
}

// All 8 scales and 8 mins at once (same values as k4_scale_min): out bytes 0-7 = sc[0..7],
// bytes 8-15 = m[0..7], from the three little-endian words w0, w1, w2 of the packed 12 bytes.
Q3_HD void k4_unpack_scale_words(uint32_t w0, uint32_t w1, uint32_t w2, uint32_t out[4]) {
    out[0] = w0 & 0x3f3f3f3fu;                                                 // sc 0..3
    out[1] = (w2 & 0x0f0f0f0fu) | (((w0 >> 6) & 0x03030303u) << 4);           // sc 4..7
    out[2] = w1 & 0x3f3f3f3fu;                                                 // m 0..3
    out[3] = ((w2 >> 4) & 0x0f0f0f0fu) | (((w1 >> 6) & 0x03030303u) << 4);    // m 4..7
}
// The same from the packed bytes.
Q3_HD void k4_unpack_scales(const uint8_t* scales, uint32_t out[4]) {
    uint32_t w[3];
    for (int k = 0; k < 3; ++k)
        w[k] = (uint32_t)scales[4 * k] | ((uint32_t)scales[4 * k + 1] << 8) |
               ((uint32_t)scales[4 * k + 2] << 16) | ((uint32_t)scales[4 * k + 3] << 24);
    k4_unpack_scale_words(w[0], w[1], w[2], out);
}

// The unsigned 6-bit value i (0..255) of a Q6_K block (subtract 32 for the signed value).
Q3_HD int q6k_value(const block_q6_K* b, int i) {
    const int h = i >> 7;          // half
    const int s = (i >> 5) & 3;    // 32-value group inside the half
    const int l = i & 31;
    const uint8_t ql = b->ql[64 * h + 32 * (s & 1) + l];
    const uint8_t qh = b->qh[32 * h + l];
    const int lo = (s < 2) ? (ql & 15) : (ql >> 4);
    return lo | (((qh >> (2 * s)) & 3) << 4);
}

}  // namespace qwen3moe
