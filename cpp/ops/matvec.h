// The matvec rule (one definition, used by every matrix of the model) and activation
// quantisation.
//
// Rule: weight of a float type (F32/F16/BF16) -> vec_dot_f32act(row, x_f32);
//       quantised weight -> activations="q8": vec_dot_q8k(row, quantize_row_q8k(x)) with x
//       quantised ONCE per token per input vector (the caller passes the q8 rows it made once
//       and reuses them for every matrix reading that vector); activations="f32":
//       vec_dot_f32act(row, x).
// Rows are independent: the threaded form splits rows over the pool and, for several tokens,
// reuses each weight row across tokens (vec_dot_q8k_multi / one dequantisation per row), which
// the quant contract makes bit-identical to the single-token call. So the value of output
// (token, row) depends on nothing but that row and that token's input.
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/blocks.h"
#include "quant/quant.h"

namespace qwen3moe {

class ThreadPool;

enum class ActMode { q8, f32 };

// Jobs smaller than this many multiply-adds run on the calling thread (a pool round trip costs
// more); which thread computes a value never changes it.
constexpr int64_t kSerialWork = 1 << 15;

// A 2-D weight: n_rows rows of n_cols values of `type`, rows row_bytes apart (host memory,
// usually inside the mapped GGUF file).
struct WeightMatrix {
    uint32_t type = 0;              // GGMLType id
    const uint8_t* data = nullptr;  // row 0
    int64_t n_cols = 0;             // values per row (ne[0])
    int64_t n_rows = 0;             // rows (ne[1])
    size_t row_bytes = 0;           // bytes per row
    const uint8_t* row(int64_t r) const { return data + (size_t)r * row_bytes; }
};

bool is_float_type(uint32_t type);  // F32, F16, BF16
// True when the rule reads q8 activations for this weight: quantised type in q8 mode.
bool matvec_uses_q8(uint32_t type, ActMode mode);

// The single (token, row) value of the rule. scratch: n_cols floats.
float matvec_one(const WeightMatrix& w, int64_t r, const float* x, const block_q8k* xq, ActMode mode,
                 float* scratch);

// Tokens per chunk of matvec_rows' Q8K path for rows of n_cols values (n_tok: no chunking):
// multiples of 8 whose activation blocks fit the cpu_tuning `token_chunk` bytes.
int64_t token_chunk_tokens(int64_t n_cols, int n_tok);

// Whether matvec() / the CPU backend run this batch on the AMX tiles: q8 rule, n_tok at least
// the cpu_tuning `amx_tokens` knob (> 0), and q8k_tiles_supported(type, n_cols).
bool matvec_use_tiles(const WeightMatrix& w, int n_tok, ActMode mode);
// Lay out the batch's q8 activations for the tiles (q8k_tiles_prepare), items split over the pool.
void matvec_prepare_tiles(ThreadPool& pool, const block_q8k* xq, int64_t xq_stride, int n_tok, int64_t n_cols,
                          Q8kTiles* out);

// y[t*y_stride + r] for r in [r0, r1), t < n_tok. Token t reads x + t*x_stride (f32) or
// xq + t*xq_stride (q8 blocks; needed only when matvec_uses_q8). scratch: n_cols floats.
// prefetch: bytes of software prefetch ahead of the current row (scheduling only; < 0: the
// cpu_tuning `prefetch` knob). tiles: the same activations laid out by matvec_prepare_tiles;
// when given (and it matches n_tok and the row length, and the type has a tile kernel) the rows
// run on the AMX tiles (the same bits).
void matvec_rows(const WeightMatrix& w, int64_t r0, int64_t r1, int n_tok, const float* x,
                 int64_t x_stride, const block_q8k* xq, int64_t xq_stride, float* y,
                 int64_t y_stride, ActMode mode, float* scratch, int64_t prefetch = -1,
                 const Q8kTiles* tiles = nullptr);

// All rows, split over the pool. scratch: pool.size() slices of scratch_stride floats
// (>= n_cols).
void matvec(ThreadPool& pool, const WeightMatrix& w, int n_tok, const float* x, int64_t x_stride,
            const block_q8k* xq, int64_t xq_stride, float* y, int64_t y_stride, ActMode mode,
            float* scratch, int64_t scratch_stride, int64_t prefetch = -1);

// quantize_row_q8k of n_tok rows of n values (n % 256 == 0): y + t*(n/256) blocks.
void quantize_rows_q8k(ThreadPool& pool, const float* x, int64_t x_stride, int n_tok, int64_t n,
                       block_q8k* y);

}  // namespace qwen3moe
