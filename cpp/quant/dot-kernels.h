// dot-kernels.h — internal: one table of Q8K/f32 dot kernels per instruction set.
//
// dot-ref.cpp (scalar reference), dot-avx2.cpp and dot-avx512.cpp each define one table; the
// dispatcher (dot-dispatch.cpp) picks one at run time. Every table returns the same bits
// (the canonical definitions in quant/dot-canon.h and ops/canon.h). Arguments are validated
// by the dispatcher; kernels assume n % 256 == 0 and a supported type.
#pragma once
#include <cstdint>

#include "quant/blocks.h"

namespace qwen3moe {

struct DotKernels {
    const char* name;  // "scalar", "avx2", "avx512vnni"
    // out[t * out_stride] = canonical dot of the weight row with a + t * a_stride (t < n_tok).
    void (*dot_q8k)(uint32_t type, const void* w_row, const block_q8k* a, int64_t a_stride,
                    int n_tok, int64_t n, float* out, int64_t out_stride);
    // One token, many rows: out[r] = the dot of row w + r * row_bytes with a (r < n_rows), the
    // same bits as dot_q8k per row; prefetch: bytes of software prefetch ahead of the rows
    // being multiplied, inside [w, w + n_rows * row_bytes) (0: none).
    void (*dot_q8k_rows1)(uint32_t type, const uint8_t* w, size_t row_bytes, int64_t n_rows, const block_q8k* a,
                          int64_t n, float* out, int64_t prefetch);
    // canonical 32-lane dot of two float vectors (any n >= 0)
    float (*canon_dot)(const float* a, const float* b, int64_t n);
    // the Q8K activation quantiser (n % 256 == 0)
    void (*quantize_q8k)(const float* x, block_q8k* y, int64_t n);
    // y[i] = canon_fma(a, x[i], y[i]) for i < n (any n >= 0)
    void (*axpy)(float a, const float* x, float* y, int64_t n);
    // s[i] = canon_silu(g[i]) * u[i] for i < n (any n >= 0)
    void (*swiglu)(const float* g, const float* u, float* s, int64_t n);
    // y[i] = canon_f16_to_f32(h[i]) for i < n (any n >= 0)
    void (*f16_to_f32)(const uint16_t* h, float* y, int64_t n);
};

// Rows [r0, r1) of a matrix starting at w prefetched up to `upto` (a row pointer; clamped to the
// end of row r_end - 1), from *next on, 64 bytes at a time: the row loops' software prefetch
// (static: each instruction-set file keeps its own copy).
static inline void prefetch_rows_upto(const uint8_t*& next, const uint8_t* upto, const uint8_t* end) {
    if (upto > end) upto = end;
    for (; next < upto; next += 64) __builtin_prefetch(next, 0, 3);
}

// The generic one-token row loop: row(r) for r < n_rows, with prefetch bytes ahead of row r + 1.
template <class RowFn>
static inline void rows1_loop(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t prefetch, RowFn&& row) {
    const uint8_t* const end = w + (size_t)n_rows * row_bytes;
    const uint8_t* next = w;
    for (int64_t r = 0; r < n_rows; ++r) {
        if (prefetch > 0) prefetch_rows_upto(next, w + (size_t)(r + 1) * row_bytes + prefetch, end);
        row(r);
    }
}

extern const DotKernels kDotKernelsRef;
extern const DotKernels kDotKernelsAvx2;
extern const DotKernels kDotKernelsAvx512;

// The scalar Q8K quantiser of one block (the definition; SIMD twins must match it).
void quantize_block_q8k_ref(const float* x, block_q8k* y);

}  // namespace qwen3moe
