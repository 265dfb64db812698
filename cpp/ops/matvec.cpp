// The matvec rule, single-token and multi-token, threaded over rows.
#include "ops/matvec.h"

#include <algorithm>

#include "ops/canon.h"
#include "quant/quant.h"
#include "runtime/cpu-tuning.h"
#include "runtime/thread-pool.h"

namespace qwen3moe {

bool is_float_type(uint32_t type) {
    return type == GGML_TYPE_F32 || type == GGML_TYPE_F16 || type == GGML_TYPE_BF16;
}

bool matvec_uses_q8(uint32_t type, ActMode mode) { return mode == ActMode::q8 && !is_float_type(type); }

float matvec_one(const WeightMatrix& w, int64_t r, const float* x, const block_q8k* xq, ActMode mode,
                 float* scratch) {
    // Rule: float weight -> vec_dot_f32act(row, x); quantised weight -> q8 mode:
    // vec_dot_q8k(row, q8(x)), f32 mode: vec_dot_f32act(row, x).
    if (matvec_uses_q8(w.type, mode)) return vec_dot_q8k(w.type, w.row(r), xq, w.n_cols);
    return vec_dot_f32act(w.type, w.row(r), x, w.n_cols, scratch);
}

int64_t token_chunk_tokens(int64_t n_cols, int n_tok) {
    const int64_t bytes = cpu_tuning::token_chunk_bytes();
    if (bytes <= 0 || n_tok <= 8) return n_tok;
    // Multiples of 8 tokens (the few-token kernels' chunk), at least 8.
    const int64_t per_tok = n_cols / QK_K * (int64_t)sizeof(block_q8k);
    const int64_t t = bytes / per_tok / 8 * 8;
    return t < 8 ? 8 : t;
}

bool matvec_use_tiles(const WeightMatrix& w, int n_tok, ActMode mode) {
    const int min_tok = cpu_tuning::amx_tokens();
    return matvec_uses_q8(w.type, mode) && min_tok > 0 && n_tok >= min_tok && q8k_tiles_supported(w.type, w.n_cols);
}

void matvec_prepare_tiles(ThreadPool& pool, const block_q8k* xq, int64_t xq_stride, int n_tok, int64_t n_cols,
                          Q8kTiles* out) {
    q8k_tiles_resize(n_tok, n_cols / QK_K, out);
    const int64_t items = q8k_tiles_items(*out);
    // items are independent (16 tokens x 256 values moved 4 bytes at a time each): one region
    pool.parallel_for(items, [&](int64_t i0, int64_t i1) { q8k_tiles_fill(xq, xq_stride, out, i0, i1); });
}

void matvec_rows(const WeightMatrix& w, int64_t r0, int64_t r1, int n_tok, const float* x,
                 int64_t x_stride, const block_q8k* xq, int64_t xq_stride, float* y,
                 int64_t y_stride, ActMode mode, float* scratch, int64_t prefetch, const Q8kTiles* tiles) {
    const int64_t n = w.n_cols;
    if (matvec_uses_q8(w.type, mode)) {
        // The AMX tiles: the same bits as the dots below, for the whole row range and batch.
        if (tiles && tiles->n_tok == n_tok && tiles->nb * QK_K == n && q8k_tiles_supported(w.type, n)) {
            if (r0 < r1) vec_dot_q8k_tiles(w.type, w.row(r0), w.row_bytes, r1 - r0, *tiles, n, y + r0, y_stride);
            return;
        }
        // vec_dot_q8k_multi: bit-identical to vec_dot_q8k per token (quant contract), so the
        // tokens may be taken in chunks: every row of [r0, r1) for the first chunk of tokens,
        // then for the next. A chunk's activation blocks (token_chunk bytes) stay in L1 across
        // the rows, where all tokens per row would stream n_tok * n / 256 blocks (150 KB for
        // 64 tokens of a 2048-wide row) through L2 for every row; the rows of one pool chunk
        // (a few dozen) stay in L2 across the token chunks.
        const int64_t tc = token_chunk_tokens(n, n_tok);
        if (tc < n_tok) {
            for (int64_t t0 = 0; t0 < n_tok; t0 += tc)
                matvec_rows(w, r0, r1, (int)std::min<int64_t>(tc, n_tok - t0), x, x_stride, xq + t0 * xq_stride,
                            xq_stride, y + t0 * y_stride, y_stride, mode, scratch, prefetch);
            return;
        }
        const int64_t pf = prefetch >= 0 ? prefetch : cpu_tuning::prefetch_bytes();
        if (n_tok == 1 && cpu_tuning::row_batch()) {  // one call for the whole row range (same bits)
            if (r0 < r1) vec_dot_q8k_rows(w.type, w.row(r0), w.row_bytes, r1 - r0, xq, n, y + r0, pf);
            return;
        }
        if (pf <= 0 || r0 >= r1) {
            for (int64_t r = r0; r < r1; ++r)
                vec_dot_q8k_multi(w.type, w.row(r), xq, xq_stride, n_tok, n, y + r, y_stride);
            return;
        }
        // Software prefetch pf bytes ahead of the current row, inside [row r0, row r1).
        const uint8_t* const end = w.row(r1);
        const uint8_t* next = w.row(r0);  // first byte not yet prefetched
        for (int64_t r = r0; r < r1; ++r) {
            const uint8_t* want = w.row(r + 1) + pf;
            if (want > end) want = end;
            for (; next < want; next += 64) __builtin_prefetch(next, 0, 3);
            vec_dot_q8k_multi(w.type, w.row(r), xq, xq_stride, n_tok, n, y + r, y_stride);
        }
        return;
    }
    if (n_tok == 1) {
        for (int64_t r = r0; r < r1; ++r) y[r] = vec_dot_f32act(w.type, w.row(r), x, n, scratch);
        return;
    }
    // vec_dot_f32act(row, x) is defined as canon_dot(dequantised row, x): dequantise each row
    // once and dot it with every token (tests check the equality with vec_dot_f32act).
    for (int64_t r = r0; r < r1; ++r) {
        const float* rowf;
        if (w.type == GGML_TYPE_F32) {
            rowf = reinterpret_cast<const float*>(w.row(r));
        } else {
            dequantize_row(w.type, w.row(r), scratch, n);
            rowf = scratch;
        }
        for (int t = 0; t < n_tok; ++t) y[t * y_stride + r] = canon_dot(rowf, x + t * x_stride, n);
    }
}

void matvec(ThreadPool& pool, const WeightMatrix& w, int n_tok, const float* x, int64_t x_stride,
            const block_q8k* xq, int64_t xq_stride, float* y, int64_t y_stride, ActMode mode,
            float* scratch, int64_t scratch_stride, int64_t prefetch) {
    if (matvec_use_tiles(w, n_tok, mode)) {
        // AMX tiles: rows are split in whole tiles of 16 (a partial tile costs a full one)
        // (the calling thread's buffer: the workers must read this one, not their own thread_local)
        static thread_local Q8kTiles tiles_of_caller;
        Q8kTiles* const tiles = &tiles_of_caller;
        matvec_prepare_tiles(pool, xq, xq_stride, n_tok, w.n_cols, tiles);
        const int64_t units = (w.n_rows + 15) / 16;
        pool.parallel_for_indexed(units, [&](int64_t u0, int64_t u1, int tid) {
            matvec_rows(w, u0 * 16, std::min(u1 * 16, w.n_rows), n_tok, x, x_stride, xq, xq_stride, y, y_stride, mode,
                        scratch + tid * scratch_stride, prefetch, tiles);
        });
        return;
    }
    if (w.n_rows * w.n_cols * n_tok < kSerialWork) {  // too small to be worth a pool round trip
        matvec_rows(w, 0, w.n_rows, n_tok, x, x_stride, xq, xq_stride, y, y_stride, mode, scratch, prefetch);
        return;
    }
    pool.parallel_for_indexed(w.n_rows, [&](int64_t r0, int64_t r1, int tid) {
        matvec_rows(w, r0, r1, n_tok, x, x_stride, xq, xq_stride, y, y_stride, mode,
                    scratch + tid * scratch_stride, prefetch);
    });
}

void quantize_rows_q8k(ThreadPool& pool, const float* x, int64_t x_stride, int n_tok, int64_t n,
                       block_q8k* y) {
    const int64_t nb = n / 256;
    if (n_tok * n < kSerialWork) {
        for (int t = 0; t < n_tok; ++t) quantize_row_q8k(x + t * x_stride, y + t * nb, n);
        return;
    }
    pool.parallel_for(n_tok, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) quantize_row_q8k(x + t * x_stride, y + t * nb, n);
    });
}

}  // namespace qwen3moe
