// Public C++ API of the quant area: dequantisation, quantisers (for test models), the
// activation format of the numerics contract (Q8K: 256 values, float scale) and the
// canonical row dot products. Block structs live in quant/blocks.h (shared with CUDA);
// the per-block float expressions in quant/dot-canon.h (shared with CUDA).
//
// Canonical definitions (ARCHITECTURE.md section 2; CUDA must reproduce them bit for bit):
//  * quantize_row_q8k: per 256-block: amax = max|x|; amax == 0 -> d = 0, q = 0; else
//    iscale = 127/amax, q = clamp(rint_half_even(x*iscale), -127, 127), d = amax/127.
//    NaN inputs are ignored by the max and give q = 0 (CUDA: fmaxf-style max, same rule);
//    bsums[k] = sum of qs[16k..16k+15].
//  * vec_dot_q8k: per 256-block b a float contribution c_b (quant/dot-canon.h) from exact
//    int32 sums; the row is the 32-lane canonical sum of the c_b (ops/canon.h).
//  * canon_dot: the 32-lane canonical dot of two float vectors (ops/canon.h).
//  * vec_dot_f32act: canon_dot(row dequantised to f32, x): the f32 reference mode, and the
//    path for F32/F16/BF16 weights in every mode.
// SIMD variants (AVX2, AVX-512/VNNI) are chosen at run time and return identical bits (NaN
// results are NaN everywhere, but their sign/payload is unspecified).
// Buffers: weight rows are raw GGUF block bytes, at least 2-byte aligned (GGUF data is 32-byte
// aligned); Q8K blocks hold qs in -127..127 with bsums = sums of 16 qs (quantize_row_q8k's output).
#pragma once
#include <cstdint>
#include <vector>

#include "quant/blocks.h"
#include "quant/ggml-types.h"

namespace qwen3moe {

// Dequantise n values (n a multiple of the type's block size). Throws UnsupportedType.
void dequantize_row(uint32_t type, const void* src, float* dst, int64_t n);

// Quantise n floats into `type` (F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K).
void quantize_row(uint32_t type, const float* src, void* dst, int64_t n);

// Activation quantiser (n % 256 == 0).
void quantize_row_q8k(const float* x, block_q8k* y, int64_t n);

// True for weight types with an integer dot against Q8K (Q4_0 Q8_0 Q4_K Q5_K Q6_K).
bool type_has_q8k_dot(uint32_t type);

// Canonical dot of a weight row of `type` (n values, n % 256 == 0) with Q8K activations.
float vec_dot_q8k(uint32_t type, const void* w_row, const block_q8k* a, int64_t n);

// out[t * out_stride] = vec_dot_q8k(type, w_row, a + t * a_stride_blocks, n) for t < n_tok,
// bit-identical to the single-token call (reuses the weight row across tokens).
void vec_dot_q8k_multi(uint32_t type, const void* w_row, const block_q8k* a,
                       int64_t a_stride_blocks, int n_tok, int64_t n, float* out,
                       int64_t out_stride);

// out[r] = vec_dot_q8k(type, w + r * row_bytes, a, n) for r < n_rows, bit-identical (one
// token against a range of rows in one call; prefetch: bytes of software prefetch ahead of
// the rows being multiplied, inside the range; 0: none).
void vec_dot_q8k_rows(uint32_t type, const uint8_t* w, size_t row_bytes, int64_t n_rows, const block_q8k* a,
                      int64_t n, float* out, int64_t prefetch = 0);

// ---- Intel AMX int8 tiles: many weight rows x a batch of tokens (prefill) ----------------
// The same bits as vec_dot_q8k per (row, token): only the exact integer sums run on the tile
// unit (quant/dot-amx.cpp). The activations of the batch are laid out once per matrix input
// (q8k_tiles_prepare) and shared by every row range and thread.
struct Q8kTiles {
    int n_tok = 0;              // tokens
    int64_t nb = 0;             // 256-value blocks per token
    std::vector<uint8_t> data;  // internal layout (quant/dot-tiles.h)
};
// Whether this process can run the tile kernels: the CPU has AMX-TILE/AMX-INT8, the OS enabled
// and granted the tile state (Linux arch_prctl XTILEDATA), and the avx512vnni table is in use
// (set_simd_level("avx2") etc. turns the tiles off too).
bool q8k_tiles_available();
// q8k_tiles_available() and a weight type / row length the tile kernels handle (Q4_K, Q6_K;
// n % 256 == 0, n <= 8192).
bool q8k_tiles_supported(uint32_t type, int64_t n);
// Lay out n_tok tokens of nb Q8K blocks (token t at a + t * a_stride_blocks) for the tiles:
// q8k_tiles_resize sizes `out` (q8k_tiles_items(out) items, zero-filled), q8k_tiles_fill writes
// items [i0, i1) (independent: threads may fill disjoint ranges); q8k_tiles_prepare does both.
void q8k_tiles_resize(int n_tok, int64_t nb, Q8kTiles* out);
int64_t q8k_tiles_items(const Q8kTiles& t);
void q8k_tiles_fill(const block_q8k* a, int64_t a_stride_blocks, Q8kTiles* out, int64_t i0, int64_t i1);
void q8k_tiles_prepare(const block_q8k* a, int64_t a_stride_blocks, int n_tok, int64_t nb, Q8kTiles* out);
// out[t * out_stride + r] = vec_dot_q8k(type, w + r * row_bytes, token t, n) for r < n_rows,
// t < a.n_tok (bit-identical). Throws std::invalid_argument unless q8k_tiles_supported(type, n)
// and a.nb == n / 256.
void vec_dot_q8k_tiles(uint32_t type, const uint8_t* w, size_t row_bytes, int64_t n_rows, const Q8kTiles& a,
                       int64_t n, float* out, int64_t out_stride);

// Canonical 32-lane dot of two float vectors.
float canon_dot(const float* a, const float* b, int64_t n);

// y[i] = canon_fma(a, x[i], y[i]) for i < n (SIMD where available, same bits).
void canon_axpy(float a, const float* x, float* y, int64_t n);

// s[i] = canon_silu(g[i]) * u[i] for i < n (SIMD where available, same bits).
void canon_swiglu(const float* g, const float* u, float* s, int64_t n);

// y[i] = canon_f16_to_f32(h[i]) for i < n (SIMD where available, same bits).
void canon_f16_to_f32_row(const uint16_t* h, float* y, int64_t n);

// canon_dot(dequantised weight row, x). `scratch` holds n floats (unused for F32 rows).
float vec_dot_f32act(uint32_t type, const void* w_row, const float* x, int64_t n, float* scratch);

// SIMD level in use: "avx512vnni", "avx2" or "scalar"; set_simd_level forces one
// (for tests; throws std::invalid_argument if the CPU lacks it; "auto" restores the best).
const char* simd_level();
void set_simd_level(const char* level);
// Whether set_simd_level(level) would succeed on this CPU.
bool simd_level_available(const char* level);

}  // namespace qwen3moe
