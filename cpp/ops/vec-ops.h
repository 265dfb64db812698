// vec-ops.h — internal: one table per instruction set of the vector kernels of the non-matvec
// ops (exp over arrays, attention of one head, RMSNorm, RoPE, the f32 -> f16 KV conversion).
//
// vec-ops.cpp holds the scalar table (the definitions of ops/canon.h, ops/rope.cpp,
// ops/rms-norm.cpp, ops/attention.cpp executed as written) and the selector; vec-ops-avx2.cpp
// and vec-ops-avx512.cpp compile the same x86 code (ops/vec-ops-x86.h) with their ISA flags.
// Every table gives the bits of the scalar table for every input (NaNs: the same NaN-ness; the
// x86 code runs the scalar definition for groups holding a NaN where hardware would change a
// payload). The table in use follows the quant area's SIMD level (simd_level(), so
// QWEN3MOE_SIMD and set_simd_level apply here too).
#pragma once
#include <cstdint>

#include "ops/attention.h"

namespace qwen3moe {

struct VecOps {
    const char* name;  // "scalar", "avx2", "avx512vnni"
    // y[i] = canon_exp(x[i]) for i < n (y may alias x)
    void (*exp)(const float* x, float* y, int64_t n);
    // y[i] = canon_exp(x[i] - m) for i < n (y may alias x)
    void (*exp_sub)(const float* x, float m, float* y, int64_t n);
    // ops/attention.h attention_head (same arguments, same bits)
    void (*attention_head)(const float* q, const void* k, const void* v, bool f16, int64_t row_stride,
                           int64_t head_off, int n_kv, int head_dim, float kq_scale, float* out,
                           const AttnScratch& sc);
    // ops/rms-norm.h rms_norm
    void (*rms_norm)(const float* x, const float* w, float* y, int64_t n, float eps);
    // ops/rope.h rope_neox (y may alias x)
    void (*rope_neox)(const float* x, float* y, int head_dim, const float* cos_row, const float* sin_row);
    // h[i] = canon_f32_to_f16(x[i]) for i < n
    void (*f32_to_f16)(const float* x, uint16_t* h, int64_t n);
};

extern const VecOps kVecOpsRef;
extern const VecOps kVecOpsAvx2;
extern const VecOps kVecOpsAvx512;

// The table of the current SIMD level (simd_level(); an unknown level name: the best table
// this CPU runs, since all give the same bits).
const VecOps& vec_ops();

// The scalar attention_head definition (ops/attention.cpp), for the tables' fallbacks.
void attention_head_ref(const float* q, const void* k, const void* v, bool f16, int64_t row_stride,
                        int64_t head_off, int n_kv, int head_dim, float kq_scale, float* out,
                        const AttnScratch& sc);

}  // namespace qwen3moe
