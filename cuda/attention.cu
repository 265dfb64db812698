// attention.cu — two launch shapes with identical bits:
//
// One block (4 warps) per (query token, head), for prefill: pass 1, the warps compute the
// scores of strided key positions and the block takes the max; pass 2, tile by tile, the
// tile's e_j go to shared memory, then thread d accumulates z and a[d] sequentially over the
// tile and adds the tile into Z, A[d] — exactly the canonical tile order. When the batch's
// largest position is known and small enough (kMaxCachedScores), pass 1 keeps the scores in
// shared memory and pass 2 reads them back; otherwise pass 2 recomputes them (identical bits).
//
// f16 cache values are widened by the hardware conversion (exact for every non-NaN f16: all
// f16 values, subnormals included, are f32 values); NaN bit patterns take canon_f16_to_f32 so
// their payload bits stay the canonical ones.
//
// Tiled prefill (attn_tiled_kernel): one block per (tile of kTiledRows query rows, KV head),
// where a row is one (query token, head of the KV head's GQA group). Each K / V tile of
// kAttnTile positions goes to shared memory once (widened to f32) and serves every row of the
// block. A thread computes whole scores — the 32 lane partials of canon_dot, each from +0.0f in
// ascending element order, then canon_tree32 evaluated depth first — for a register tile of 4
// rows x 4 keys; pass 1 keeps the rows' maxima (and, when the caller's scratch holds them, stores
// the scores in the thread's own scratch slots), pass 2 reads those back (or recomputes them),
// stores e_j for the tile in shared memory, and thread (rows, dims) accumulates z and a[d] sequentially over
// the tile's keys, then Z = Z + z, A[d] = A[d] + a[d] — the canonical expression per pair.
//
// Split-K, for decode at long context (few query rows, many keys): (1) a block per (tile,
// head, token) stores the tile's scores and max; (2) a block per (tile, head, token) takes the
// global max, forms e_j and the tile's (z, a[d]) sequentially; (3) a block per (head, token)
// adds the tiles in ascending order and divides. Every value is the same expression in the
// same order as above.
#include <stdexcept>
#include <string>

#include <cuda_fp16.h>

#include "cuda/attention.cuh"
#include "cuda/qk-norm-rope.cuh"

namespace qwen3moe::cuda {

namespace {
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarp;
constexpr int kMaxHeadDim = 256;  // two output dims per thread
// Largest cached score row (floats of dynamic shared memory; with the static arrays the block
// stays under the 48 KiB that needs no opt-in).
constexpr int64_t kMaxCachedScores = 11 * 1024;

// A cache element as stored (f16 bits or f32) and widened to f32.
template <bool F16> struct KvRaw { using type = float; };
template <> struct KvRaw<true> { using type = uint16_t; };
template <bool F16>
__device__ __forceinline__ float kv_widen(typename KvRaw<F16>::type x) {
    if constexpr (F16) {
        if ((x & 0x7c00u) == 0x7c00u && (x & 0x03ffu) != 0u) return canon_f16_to_f32(x);  // NaN
        return __half2float(__ushort_as_half(x));
    } else
        return x;
}
template <bool F16>
__device__ __forceinline__ float kv_value(const void* cache, int64_t i) {
    return kv_widen<F16>(static_cast<const typename KvRaw<F16>::type*>(cache)[i]);
}

// s = canon_dot(q, k_row, hd) * kq_scale, computed by one warp (all lanes return it).
template <bool F16>
__device__ __forceinline__ float score(const float* q, const void* k_cache, int64_t k_off, int hd,
                                       float kq_scale) {
    const int lane = threadIdx.x & 31;
    float p = 0.0f;
    for (int i = lane; i < hd; i += kWarp) p = canon_fma(q[i], kv_value<F16>(k_cache, k_off + i), p);
    return warp_tree_sum(p) * kq_scale;
}

template <bool F16>
__global__ void __launch_bounds__(kThreads) attention_kernel(AttentionArgs p, int64_t n_cached) {
    extern __shared__ float s_cache[];  // [n_cached] scores of the current (token, head)
    __shared__ float q_sh[kMaxHeadDim];
    __shared__ float e_sh[kAttnTile];
    __shared__ float red[kWarps];
    __shared__ float s0_sh;  // score of key 0 (the CPU's max starts from it)
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tid = threadIdx.x;
    const int h = blockIdx.x;
    const int hd = p.hd;
    const int g = h / (p.n_head / p.n_head_kv);
    const int64_t kv_row = (int64_t)p.n_head_kv * hd;
    const float kq_scale = canon_div(1.0f, canon_sqrt((float)hd));

    for (int64_t t = blockIdx.y; t < p.n_tok; t += gridDim.y) {
        float* out = p.out + (t * p.n_head + h) * hd;
        const int64_t pos = p.pos[t];
        if (pos < 0 || pos >= p.n_ctx) {
            for (int d = tid; d < hd; d += kThreads) out[d] = __int_as_float(0x7fc00000);
            continue;  // block-uniform
        }
        for (int d = tid; d < hd; d += kThreads) q_sh[d] = p.q[(t * p.n_head + h) * hd + d];
        __syncthreads();
        const bool cached = pos < n_cached;  // block-uniform

        // Pass 1: m = max_j s_j.
        float mx = -__int_as_float(0x7f800000);
        for (int64_t j = warp; j <= pos; j += kWarps) {
            const float s = score<F16>(q_sh, p.k_cache, j * kv_row + (int64_t)g * hd, hd, kq_scale);
            if (cached && lane == 0) s_cache[j] = s;
            if (j == 0 && lane == 0) s0_sh = s;
            mx = fmaxf(mx, s);
        }
        if (lane == 0) red[warp] = mx;
        __syncthreads();
        // CPU semantics (m = s_0; m = s_j if s_j > m): NaN scores never win, except s_0.
        float m = red[0];
        for (int w = 1; w < kWarps; ++w) m = fmaxf(m, red[w]);
        if (s0_sh != s0_sh) m = s0_sh;

        // Pass 2: tiles in ascending order.
        float Z = 0.0f, A0 = 0.0f, A1 = 0.0f;
        const int d0 = tid, d1 = tid + kThreads;
        for (int64_t t0 = 0; t0 <= pos; t0 += kAttnTile) {
            const int len = (int)(pos + 1 - t0 < kAttnTile ? pos + 1 - t0 : kAttnTile);
            if (cached) {
                for (int j = tid; j < len; j += kThreads) e_sh[j] = canon_exp(s_cache[t0 + j] - m);
            } else {
                for (int j = warp; j < len; j += kWarps) {
                    const float s = score<F16>(q_sh, p.k_cache, (t0 + j) * kv_row + (int64_t)g * hd, hd, kq_scale);
                    if (lane == 0) e_sh[j] = canon_exp(s - m);
                }
            }
            __syncthreads();
            float z = 0.0f, a0 = 0.0f, a1 = 0.0f;
            const int64_t v_base = t0 * kv_row + (int64_t)g * hd;
            for (int j = 0; j < len; ++j) {
                const float e = e_sh[j];
                z = z + e;
                const int64_t vo = v_base + j * kv_row;
                if (d0 < hd) a0 = canon_fma(e, kv_value<F16>(p.v_cache, vo + d0), a0);
                if (d1 < hd) a1 = canon_fma(e, kv_value<F16>(p.v_cache, vo + d1), a1);
            }
            Z = Z + z;
            A0 = A0 + a0;
            A1 = A1 + a1;
            __syncthreads();  // e_sh is rewritten by the next tile
        }
        if (d0 < hd) out[d0] = canon_div(A0, Z);
        if (d1 < hd) out[d1] = canon_div(A1, Z);
        __syncthreads();  // q_sh / red are rewritten for the next token
    }
}

// ---- split-K ------------------------------------------------------------------------------

struct SplitLayout {
    int64_t n_ctx;      // score row length
    int n_tiles;        // tiles per (token, head) row of partials (ceil(n_ctx / kAttnTile))
    int hd;             // head_dim
    float* scores;      // [n_tok][n_head][n_ctx]
    float* tmax;        // [n_tok][n_head][n_tiles]
    float* part;        // [n_tok][n_head][n_tiles][1 + hd]: z, then a[hd]
};

template <bool F16>
__global__ void __launch_bounds__(kThreads) attn_split_scores(AttentionArgs p, SplitLayout L) {
    __shared__ float q_sh[kMaxHeadDim];
    __shared__ float red[kWarps];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tid = threadIdx.x;
    const int tile = blockIdx.x, h = blockIdx.y;
    const int64_t t = blockIdx.z;
    const int64_t pos = p.pos[t];
    const int64_t t0 = (int64_t)tile * kAttnTile;
    if (pos < 0 || pos >= p.n_ctx || t0 > pos) return;  // block-uniform
    const int hd = p.hd;
    const int g = h / (p.n_head / p.n_head_kv);
    const int64_t kv_row = (int64_t)p.n_head_kv * hd;
    const float kq_scale = canon_div(1.0f, canon_sqrt((float)hd));
    const int len = (int)(pos + 1 - t0 < kAttnTile ? pos + 1 - t0 : kAttnTile);
    for (int d = tid; d < hd; d += kThreads) q_sh[d] = p.q[(t * p.n_head + h) * hd + d];
    __syncthreads();
    float* srow = L.scores + (t * p.n_head + h) * L.n_ctx;
    float mx = -__int_as_float(0x7f800000);
    for (int j = warp; j < len; j += kWarps) {
        const float s = score<F16>(q_sh, p.k_cache, (t0 + j) * kv_row + (int64_t)g * hd, hd, kq_scale);
        if (lane == 0) srow[t0 + j] = s;
        mx = fmaxf(mx, s);
    }
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    if (tid == 0) {
        float m = red[0];
        for (int w = 1; w < kWarps; ++w) m = fmaxf(m, red[w]);
        L.tmax[(t * p.n_head + h) * L.n_tiles + tile] = m;
    }
}

template <bool F16>
__global__ void __launch_bounds__(kThreads) attn_split_tiles(AttentionArgs p, SplitLayout L) {
    __shared__ float e_sh[kAttnTile];
    __shared__ float red[kWarps];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, tid = threadIdx.x;
    const int tile = blockIdx.x, h = blockIdx.y;
    const int64_t t = blockIdx.z;
    const int64_t pos = p.pos[t];
    const int64_t t0 = (int64_t)tile * kAttnTile;
    if (pos < 0 || pos >= p.n_ctx || t0 > pos) return;  // block-uniform
    const int hd = p.hd;
    const int g = h / (p.n_head / p.n_head_kv);
    const int64_t kv_row = (int64_t)p.n_head_kv * hd;
    const int64_t row = t * p.n_head + h;
    const int n_t = (int)(pos / kAttnTile) + 1;  // tiles of this query
    const int len = (int)(pos + 1 - t0 < kAttnTile ? pos + 1 - t0 : kAttnTile);
    const float* srow = L.scores + row * L.n_ctx;
    // m = max over the tile maxima (exact in any order); CPU semantics: a NaN s_0 wins.
    float mx = -__int_as_float(0x7f800000);
    for (int i = tid; i < n_t; i += kThreads) mx = fmaxf(mx, L.tmax[row * L.n_tiles + i]);
    mx = warp_max(mx);
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    float m = red[0];
    for (int w = 1; w < kWarps; ++w) m = fmaxf(m, red[w]);
    const float s0 = srow[0];
    if (s0 != s0) m = s0;
    for (int j = tid; j < len; j += kThreads) e_sh[j] = canon_exp(srow[t0 + j] - m);
    __syncthreads();
    float z = 0.0f, a0 = 0.0f, a1 = 0.0f;
    const int d0 = tid, d1 = tid + kThreads;
    const int64_t v_base = t0 * kv_row + (int64_t)g * hd;
    for (int j = 0; j < len; ++j) {
        const float e = e_sh[j];
        z = z + e;
        const int64_t vo = v_base + j * kv_row;
        if (d0 < hd) a0 = canon_fma(e, kv_value<F16>(p.v_cache, vo + d0), a0);
        if (d1 < hd) a1 = canon_fma(e, kv_value<F16>(p.v_cache, vo + d1), a1);
    }
    float* part = L.part + (row * L.n_tiles + tile) * (int64_t)(1 + hd);
    if (tid == 0) part[0] = z;
    if (d0 < hd) part[1 + d0] = a0;
    if (d1 < hd) part[1 + d1] = a1;
}

__global__ void __launch_bounds__(kThreads) attn_split_combine(AttentionArgs p, SplitLayout L) {
    const int h = blockIdx.x, tid = threadIdx.x;
    const int64_t t = blockIdx.y;
    const int hd = p.hd;
    float* out = p.out + (t * p.n_head + h) * hd;
    const int64_t pos = p.pos[t];
    if (pos < 0 || pos >= p.n_ctx) {
        for (int d = tid; d < hd; d += kThreads) out[d] = __int_as_float(0x7fc00000);
        return;
    }
    const int64_t row = t * p.n_head + h;
    const int n_t = (int)(pos / kAttnTile) + 1;
    const float* part = L.part + row * L.n_tiles * (int64_t)(1 + hd);
    for (int d = tid; d < hd; d += kThreads) {
        float Z = 0.0f, A = 0.0f;
        for (int i = 0; i < n_t; ++i) {  // ascending tile order from +0.0f
            Z = Z + part[i * (int64_t)(1 + hd)];
            A = A + part[i * (int64_t)(1 + hd) + 1 + d];
        }
        out[d] = canon_div(A, Z);
    }
}


// ---- tiled prefill --------------------------------------------------------------------------

constexpr int kTiledThreads = 256;                 // 8 warps
constexpr int kTiledRows = 32;                     // (token, head) rows per block
constexpr int kRowsPerThread = 4;                  // rows r0 + 8 * i of a thread (score and output tiles)
constexpr int kRowGroups = kTiledRows / kRowsPerThread;   // 8
constexpr int kKeyGroups = kTiledThreads / kRowGroups;    // 32: keys kg + 32 * k of a thread
constexpr int kKeysPerThread = kAttnTile / kKeyGroups;    // 4
constexpr int kEStride = kAttnTile + 4;            // floats per row of the e tile (conflict-free LDS.128)
#ifndef Q3_ATTN_KPASS
#define Q3_ATTN_KPASS 2
#endif
constexpr int kTiledMinTok = 8;                    // auto: batches of more tokens take the tiled kernel

// Row stride (floats) of the permuted q / k tiles and of the v tile for NC chunks of 32 dims:
// element i of a row sits at (i % 32) * NC + i / 32, so one thread's lane partial reads NC
// consecutive floats; +4 floats make 8 consecutive rows hit distinct 16-byte bank groups.
template <int NC>
constexpr int tiled_stride() { return 32 * NC + 4; }

template <int NC>
constexpr size_t tiled_smem_bytes() {
    return sizeof(float) * ((size_t)(kTiledRows + kAttnTile) * tiled_stride<NC>() + (size_t)kTiledRows * kEStride +
                            (size_t)kTiledRows * 8);
}

template <int N>
__device__ __forceinline__ void lds_vec(const float* p, float (&v)[N]) {
    if constexpr (N % 4 == 0) {
#pragma unroll
        for (int i = 0; i < N; i += 4) {
            const float4 x = *reinterpret_cast<const float4*>(p + i);
            v[i] = x.x, v[i + 1] = x.y, v[i + 2] = x.z, v[i + 3] = x.w;
        }
    } else if constexpr (N == 2) {
        const float2 x = *reinterpret_cast<const float2*>(p);
        v[0] = x.x, v[1] = x.y;
    } else {
#pragma unroll
        for (int i = 0; i < N; ++i) v[i] = p[i];
    }
}

template <int N>
__device__ __forceinline__ void sts_vec(float* p, const float (&v)[N]) {
    if constexpr (N % 4 == 0) {
#pragma unroll
        for (int i = 0; i < N; i += 4) *reinterpret_cast<float4*>(p + i) = make_float4(v[i], v[i + 1], v[i + 2], v[i + 3]);
    } else if constexpr (N == 2) {
        *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
    } else {
#pragma unroll
        for (int i = 0; i < N; ++i) p[i] = v[i];
    }
}

// Lane partial L of canon_dot for the thread's 4 rows x KPT keys: p = canon_fma(q[i], k[i], p)
// over i = L, L+32, ... < hd ascending, from +0.0f. qp: the thread's first row (rows 8 apart),
// kp: its first key (keys 32 apart), both in the permuted layout.
template <int NC, int KPT, int L>
__device__ __forceinline__ void tiled_leaf(const float* qp, const float* kp, int hd,
                                           float (&p)[kRowsPerThread][KPT]) {
    constexpr int S = tiled_stride<NC>();
    float q[kRowsPerThread][NC], k[KPT][NC];
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) lds_vec<NC>(qp + r * kRowGroups * S + L * NC, q[r]);
#pragma unroll
    for (int j = 0; j < KPT; ++j) lds_vec<NC>(kp + j * kKeyGroups * S + L * NC, k[j]);
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
        for (int j = 0; j < KPT; ++j) p[r][j] = 0.0f;
#pragma unroll
    for (int c = 0; c < NC; ++c) {
        if (L + 32 * c < hd) {
#pragma unroll
            for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
                for (int j = 0; j < KPT; ++j) p[r][j] = canon_fma(q[r][c], k[j][c], p[r][j]);
        }
    }
}

// Node (L, S) of canon_tree32 (for s = 16 .. 1: p[l] = p[l] + p[l+s]): the value p[L] holds after
// the level of stride S, i.e. node(L, S) = node(L, 2S) + node(L + S, 2S), node(L, 32) = partial L.
// Evaluated depth first, so few partials are live at a time. node<.., 0, 1> is canon_dot.
template <int NC, int KPT, int L, int S>
__device__ __forceinline__ void tiled_node(const float* qp, const float* kp, int hd,
                                           float (&out)[kRowsPerThread][KPT]) {
    float a[kRowsPerThread][KPT], b[kRowsPerThread][KPT];
    if constexpr (S == 16) {
        tiled_leaf<NC, KPT, L>(qp, kp, hd, a);
        tiled_leaf<NC, KPT, L + 16>(qp, kp, hd, b);
    } else {
        tiled_node<NC, KPT, L, 2 * S>(qp, kp, hd, a);
        tiled_node<NC, KPT, L + S, 2 * S>(qp, kp, hd, b);
    }
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
        for (int j = 0; j < KPT; ++j) out[r][j] = a[r][j] + b[r][j];
}

// Loads kAttnTile cache rows from position t0 (head offset hoff) into dst: permuted (K) or
// plain (V) layout; positions above kmax and dims >= hd read as 0 (never used in a sum).
// A warp's 16 rows go in batches of Q3_ATTN_LOAD_BATCH (8): every raw load of a batch is issued
// before its first conversion and store, so a batch costs one memory round trip. (A store right
// after its own loads held the next loads back until they returned: 16 round trips per tile.
// Batches of 16 spill under the 128-register bound of two blocks per SM.)
#ifndef Q3_ATTN_LOAD_BATCH
#define Q3_ATTN_LOAD_BATCH 8
#endif
template <bool F16, int NC, bool PERMUTED>
__device__ __forceinline__ void tiled_load_kv(float* dst, const void* cache, int64_t t0, int64_t kmax,
                                              int64_t kv_row, int64_t hoff, int hd) {
    using Raw = typename KvRaw<F16>::type;
    constexpr int S = tiled_stride<NC>();
    constexpr int kWarps = kTiledThreads / kWarp;
    constexpr int kRowsPerWarp = kAttnTile / kWarps;
    constexpr int kBatch = Q3_ATTN_LOAD_BATCH < kRowsPerWarp ? Q3_ATTN_LOAD_BATCH : kRowsPerWarp;
    static_assert(kRowsPerWarp % kBatch == 0, "whole batches");
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t stride = kWarps * kv_row;  // elements from one of the warp's rows to the next
    const Raw* src = static_cast<const Raw*>(cache) + (t0 + warp) * kv_row + hoff + lane;
    const int64_t nrows = kmax - t0 - warp;   // the warp's row r is a key <= kmax iff kWarps r <= nrows
#pragma unroll 1
    for (int b0 = 0; b0 < kRowsPerWarp; b0 += kBatch, src += kBatch * stride) {
        Raw raw[kBatch][NC];
#pragma unroll
        for (int jj = 0; jj < kBatch; ++jj) {
            const bool ok = kWarps * (b0 + jj) <= nrows;
#pragma unroll
            for (int c = 0; c < NC; ++c) raw[jj][c] = ok && lane + 32 * c < hd ? src[jj * stride + 32 * c] : Raw(0);
        }
#pragma unroll
        for (int jj = 0; jj < kBatch; ++jj) {
            const int j = warp + kWarps * (b0 + jj);
            float v[NC];
#pragma unroll
            for (int c = 0; c < NC; ++c) v[c] = kv_widen<F16>(raw[jj][c]);
            if constexpr (PERMUTED) {
                sts_vec<NC>(dst + j * S + lane * NC, v);
            } else {
#pragma unroll
                for (int c = 0; c < NC; ++c) dst[j * S + lane + 32 * c] = v[c];
            }
        }
    }
}

// z and a[r][.] of one tile for the thread's rows (r0 + 8 i) and dims (NC from dbase):
// ascending j, z = z + e_j (e_j = 0 past a row's position: exact), a = canon_fma(e_j, v_j, a)
// only where j <= the row's position (MASKED; unmasked tiles are visible to every row).
template <int NC, bool MASKED>
__device__ __forceinline__ void tiled_accumulate(const float* e_sh, const float* v_sh, int r0, int zr, int dbase,
                                                 int tl, const int (&len)[kRowsPerThread], float& z,
                                                 float (&a)[kRowsPerThread][NC]) {
    constexpr int S = tiled_stride<NC>();
    const float* ez = e_sh + (r0 + kRowGroups * zr) * kEStride;
#pragma unroll 2
    for (int j = 0; j < tl; j += 4) {
        float e[kRowsPerThread][4], e_z[4];
#pragma unroll
        for (int r = 0; r < kRowsPerThread; ++r) lds_vec<4>(e_sh + (r0 + kRowGroups * r) * kEStride + j, e[r]);
        lds_vec<4>(ez + j, e_z);
#pragma unroll
        for (int jj = 0; jj < 4; ++jj) {
            float v[NC];
            lds_vec<NC>(v_sh + (j + jj) * S + dbase, v);
            z = z + e_z[jj];
#pragma unroll
            for (int r = 0; r < kRowsPerThread; ++r) {
                if (!MASKED || j + jj < len[r]) {
#pragma unroll
                    for (int c = 0; c < NC; ++c) a[r][c] = canon_fma(e[r][jj], v[c], a[r][c]);
                }
            }
        }
    }
}

template <bool F16, int NC, int MINB, int KPASS>
__global__ void __launch_bounds__(kTiledThreads, MINB) attn_tiled_kernel(AttentionArgs p, float* cache, int cache_tiles) {
    constexpr int S = tiled_stride<NC>();
    constexpr int KPT = KPASS;  // keys per thread per score pass (kKeysPerThread / KPT passes)
    extern __shared__ float4 tiled_smem[];
    float* q_sh = reinterpret_cast<float*>(tiled_smem);  // [kTiledRows][S] permuted q rows
    float* kv_sh = q_sh + kTiledRows * S;                  // [kAttnTile][S] permuted K or plain V tile
    float* e_sh = kv_sh + kAttnTile * S;                   // [kTiledRows][kEStride] e_j of the tile
    float* red_sh = e_sh + kTiledRows * kEStride;          // [kTiledRows][4] partial maxima
    float* m_sh = red_sh + kTiledRows * 4;                 // [kTiledRows] row maxima m
    float* s0_sh = m_sh + kTiledRows;                      // [kTiledRows] s_0 per row
    float* z_sh = s0_sh + kTiledRows;                      // [kTiledRows] Z per row
    int* pos_sh = reinterpret_cast<int*>(z_sh + kTiledRows);  // [kTiledRows] position, -1 if none
    __shared__ int range_sh[2];                            // max and min row position of the block

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int hd = p.hd;
    const int G = p.n_head / p.n_head_kv;
    const int g = blockIdx.y;
    const int64_t kv_row = (int64_t)p.n_head_kv * hd;
    const int64_t hoff = (int64_t)g * hd;
    const float kq_scale = canon_div(1.0f, canon_sqrt((float)hd));
    // Heaviest blocks (latest tokens, in prefill the largest positions) first.
    const int64_t row0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * kTiledRows;
    const int64_t n_rows = (int64_t)p.n_tok * G;

    if (tid < kTiledRows) {
        const int64_t rr = row0 + tid;
        int pos = -1;
        if (rr < n_rows) {
            const int64_t pp = p.pos[rr / G];
            pos = pp >= 0 && pp < p.n_ctx ? (int)pp : -1;
        }
        pos_sh[tid] = pos;
        int mx = pos, mn = pos;
#pragma unroll
        for (int s = 16; s >= 1; s >>= 1) {
            mx = max(mx, __shfl_xor_sync(kFullMask, mx, s));
            mn = min(mn, __shfl_xor_sync(kFullMask, mn, s));
        }
        if (tid == 0) range_sh[0] = mx, range_sh[1] = mn;
    }
    // q rows, permuted; rows without a valid position are zero (never used).
    for (int idx = tid; idx < kTiledRows * 32; idx += kTiledThreads) {
        const int r = idx >> 5, l = idx & 31;
        const int64_t rr = row0 + r;
        const bool ok = rr < n_rows;
        const float* q = ok ? p.q + ((rr / G) * p.n_head + (int64_t)g * G + rr % G) * hd : nullptr;
        float v[NC];
#pragma unroll
        for (int c = 0; c < NC; ++c) v[c] = ok && l + 32 * c < hd ? q[l + 32 * c] : 0.0f;
        sts_vec<NC>(q_sh + r * S + l * NC, v);
    }
    __syncthreads();
    const int64_t kmax = range_sh[0];  // last key any row of the block sees (-1: none)
    const int minpos = range_sh[1];
    // Score cache: pass 1 stores each thread's scores s * kq_scale in its own slots of global
    // scratch (tile t, element i of its 4 x 4 register tile: creg[(16 t + i) * kTiledThreads]),
    // and pass 2 reads them back instead of reloading K and recomputing them. A thread reads only
    // what it wrote, so no fence is needed; the value is the same float either way.
    const bool cached = cache != nullptr && kmax < (int64_t)cache_tiles * kAttnTile;  // block-uniform
    float* creg = cached ? cache + ((int64_t)blockIdx.y * gridDim.x + blockIdx.x) * cache_tiles *
                                       (int64_t)(kRowsPerThread * kKeysPerThread * kTiledThreads) + tid
                         : nullptr;

    // Score tile of this thread: rows rg + 8 i, keys kg + 32 k.
    const int rg = (warp >> 2) * 4 + (lane >> 3), kg = (warp & 3) * 8 + (lane & 7);
    const float* qp = q_sh + rg * S;
    const float* kp = kv_sh + kg * S;
    int spos[kRowsPerThread];
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) spos[r] = pos_sh[rg + kRowGroups * r];

    // Pass 1: row maxima (fmaxf; a NaN s_0 wins below, as in the CPU's m = s_0; s_j > m).
    float mx[kRowsPerThread];
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) mx[r] = -__int_as_float(0x7f800000);
    for (int64_t t0 = 0; t0 <= kmax; t0 += kAttnTile) {
        tiled_load_kv<F16, NC, true>(kv_sh, p.k_cache, t0, kmax, kv_row, hoff, hd);
        __syncthreads();
        for (int kh = 0; kh < kKeysPerThread / KPT; ++kh) {
            float s[kRowsPerThread][KPT];
            tiled_node<NC, KPT, 0, 1>(qp, kp + kh * KPT * kKeyGroups * S, hd, s);
#pragma unroll
            for (int r = 0; r < kRowsPerThread; ++r) {
#pragma unroll
                for (int k = 0; k < KPT; ++k) {
                    const float sc = s[r][k] * kq_scale;
                    const int64_t key = t0 + kg + kKeyGroups * (kh * KPT + k);
                    if (key <= spos[r]) mx[r] = fmaxf(mx[r], sc);
                    if (key == 0) s0_sh[rg + kRowGroups * r] = sc;
                    if (cached)
                        creg[((t0 / kAttnTile) * (kRowsPerThread * kKeysPerThread) + r * kKeysPerThread + kh * KPT + k) *
                             (int64_t)kTiledThreads] = sc;
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
        float v = mx[r];
        v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 1));
        v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 2));
        v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 4));
        if ((lane & 7) == 0) red_sh[(rg + kRowGroups * r) * 4 + (warp & 3)] = v;
    }
    __syncthreads();
    if (tid < kTiledRows) {
        float m = red_sh[tid * 4];
        for (int w = 1; w < 4; ++w) m = fmaxf(m, red_sh[tid * 4 + w]);
        const float s0 = s0_sh[tid];
        if (pos_sh[tid] >= 0 && s0 != s0) m = s0;
        m_sh[tid] = m;
    }
    __syncthreads();
    float sm[kRowsPerThread];
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) sm[r] = m_sh[rg + kRowGroups * r];

    // Output tile of this thread: rows ra + 8 i, dims dbase .. dbase + NC - 1; z of row ra + 8 zr.
    const int ra = lane >> 2, dbase = warp * 4 * NC + (lane & 3) * NC, zr = warp & 3;
    int apos[kRowsPerThread];
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) apos[r] = pos_sh[ra + kRowGroups * r];
    float A[kRowsPerThread][NC], Z = 0.0f;
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
        for (int c = 0; c < NC; ++c) A[r][c] = 0.0f;

    // Pass 2: tiles in ascending order.
    for (int64_t t0 = 0; t0 <= kmax; t0 += kAttnTile) {
        if (cached) {  // V at once (the buffer is free), e_j from the stored scores
            tiled_load_kv<F16, NC, false>(kv_sh, p.v_cache, t0, kmax, kv_row, hoff, hd);
            const float* ct = creg + (t0 / kAttnTile) * (kRowsPerThread * kKeysPerThread) * (int64_t)kTiledThreads;
            float sc[kRowsPerThread][kKeysPerThread];
#pragma unroll
            for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
                for (int k = 0; k < kKeysPerThread; ++k) sc[r][k] = ct[(r * kKeysPerThread + k) * kTiledThreads];
#pragma unroll
            for (int r = 0; r < kRowsPerThread; ++r) {
#pragma unroll
                for (int k = 0; k < kKeysPerThread; ++k) {
                    const int kl = kg + kKeyGroups * k;  // key within the tile
                    const float e = t0 + kl <= spos[r] ? canon_exp(sc[r][k] - sm[r]) : 0.0f;
                    e_sh[(rg + kRowGroups * r) * kEStride + kl] = e;
                }
            }
            __syncthreads();
        } else {
            tiled_load_kv<F16, NC, true>(kv_sh, p.k_cache, t0, kmax, kv_row, hoff, hd);
            __syncthreads();
            for (int kh = 0; kh < kKeysPerThread / KPT; ++kh) {
                float s[kRowsPerThread][KPT];
                tiled_node<NC, KPT, 0, 1>(qp, kp + kh * KPT * kKeyGroups * S, hd, s);
#pragma unroll
                for (int r = 0; r < kRowsPerThread; ++r) {
#pragma unroll
                    for (int k = 0; k < KPT; ++k) {
                        const int kl = kg + kKeyGroups * (kh * KPT + k);  // key within the tile
                        const float e = t0 + kl <= spos[r] ? canon_exp(s[r][k] * kq_scale - sm[r]) : 0.0f;
                        e_sh[(rg + kRowGroups * r) * kEStride + kl] = e;
                    }
                }
            }
            __syncthreads();  // K tile consumed; V goes to the same buffer
            tiled_load_kv<F16, NC, false>(kv_sh, p.v_cache, t0, kmax, kv_row, hoff, hd);
            __syncthreads();
        }
        const int64_t rest = kmax + 1 - t0;
        const int tl = (int)(rest < kAttnTile ? rest : kAttnTile);
        float z = 0.0f, a[kRowsPerThread][NC];
#pragma unroll
        for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
            for (int c = 0; c < NC; ++c) a[r][c] = 0.0f;
        if (minpos >= t0 + kAttnTile - 1) {  // every row sees the whole tile (block-uniform)
            const int len[kRowsPerThread] = {kAttnTile, kAttnTile, kAttnTile, kAttnTile};
            tiled_accumulate<NC, false>(e_sh, kv_sh, ra, zr, dbase, kAttnTile, len, z, a);
        } else {
            int len[kRowsPerThread];
#pragma unroll
            for (int r = 0; r < kRowsPerThread; ++r) {
                const int64_t n = apos[r] + 1 - t0;  // keys of this tile the row sees
                len[r] = (int)(n < 0 ? 0 : n);
            }
            tiled_accumulate<NC, true>(e_sh, kv_sh, ra, zr, dbase, tl, len, z, a);
        }
        // Tiles combined in ascending order from +0.0f (a tile a row does not see adds +0.0f to
        // a Z / A that is never -0.0f: exact).
        Z = Z + z;
#pragma unroll
        for (int r = 0; r < kRowsPerThread; ++r)
#pragma unroll
            for (int c = 0; c < NC; ++c) A[r][c] = A[r][c] + a[r][c];
        __syncthreads();  // e and V tiles are rewritten by the next tile
    }
    if (warp < 4 && (lane & 3) == 0) z_sh[ra + kRowGroups * zr] = Z;
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
        const int row = ra + kRowGroups * r;
        const int64_t rr = row0 + row;
        if (rr >= n_rows) continue;
        float* out = p.out + ((rr / G) * p.n_head + (int64_t)g * G + rr % G) * hd;
        const float zz = z_sh[row];
        const bool ok = apos[r] >= 0;
#pragma unroll
        for (int c = 0; c < NC; ++c) {
            const int d = dbase + c;
            if (d < hd) out[d] = ok ? canon_div(A[r][c], zz) : __int_as_float(0x7fc00000);
        }
    }
}

// Floats of the tiled kernel's score cache for n_tok query tokens and keys 0 .. n_keys - 1: one
// slot per (row, key) of every block's tiles.
size_t tiled_cache_floats(int64_t n_tok, int n_head, int n_head_kv, int64_t n_keys) {
    const int64_t G = n_head / n_head_kv;
    const int64_t blocks = (n_tok * G + kTiledRows - 1) / kTiledRows;
    const int64_t tiles = (n_keys + kAttnTile - 1) / kAttnTile;
    return (size_t)(blocks * n_head_kv * tiles * (int64_t)kTiledRows * kAttnTile);
}

// Launches the tiled kernel for head_dim chunks NC; false if the device cannot give it the
// shared memory it needs (the caller falls back to the one-block kernel).
template <int NC>
bool tiled_launch(const AttentionArgs& p, cudaStream_t stream) {
    constexpr size_t smem = tiled_smem_bytes<NC>();
    constexpr int minb = NC <= 4 ? 2 : 1;
    constexpr int kpass = Q3_ATTN_KPASS;
    int dev = 0, optin = 0;
    Q3_CUDA_CHECK(cudaGetDevice(&dev));
    Q3_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (smem > (size_t)optin) return false;
    const int G = p.n_head / p.n_head_kv;
    const int64_t blocks = ((int64_t)p.n_tok * G + kTiledRows - 1) / kTiledRows;
    if (blocks > 0x7fffffff || p.n_head_kv > 65535) return false;
    const dim3 grid((unsigned)blocks, (unsigned)p.n_head_kv);
    // The score cache when the scratch holds every block's tiles up to the last key (the known
    // largest position, else n_ctx); without it pass 2 recomputes the scores (same bits).
    const int64_t last = p.max_pos >= 0 && p.max_pos < p.n_ctx ? p.max_pos : p.n_ctx - 1;
    const int cache_tiles = (int)(last / kAttnTile + 1);
    const bool use_cache = p.split != 1 && p.scratch &&
                           p.scratch_floats >= tiled_cache_floats(p.n_tok, p.n_head, p.n_head_kv, last + 1);
    float* cache = use_cache ? p.scratch : nullptr;
    if (p.cache_f16) {
        Q3_CUDA_CHECK(cudaFuncSetAttribute(attn_tiled_kernel<true, NC, minb, kpass>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attn_tiled_kernel<true, NC, minb, kpass><<<grid, kTiledThreads, smem, stream>>>(p, cache, cache_tiles);
    } else {
        Q3_CUDA_CHECK(cudaFuncSetAttribute(attn_tiled_kernel<false, NC, minb, kpass>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attn_tiled_kernel<false, NC, minb, kpass><<<grid, kTiledThreads, smem, stream>>>(p, cache, cache_tiles);
    }
    Q3_CUDA_CHECK_LAUNCH();
    return true;
}

// head_dim <= 128 in 4 chunks of 32, <= 256 in 8 (chunks past head_dim are skipped).
bool tiled_attention(const AttentionArgs& p, cudaStream_t stream) {
    if (p.hd <= 128) return tiled_launch<4>(p, stream);
    return tiled_launch<8>(p, stream);
}

}  // namespace

size_t attention_scratch_floats(int n_tok, int n_head, int hd, int64_t n_ctx) {
    const int64_t n_tiles = (n_ctx + kAttnTile - 1) / kAttnTile;
    return (size_t)n_tok * n_head * ((size_t)n_ctx + (size_t)n_tiles * (2 + (size_t)hd));
}

size_t attention_prefill_scratch_floats(int n_tok, int n_head, int n_head_kv, int64_t n_keys) {
    if (n_tok <= 0 || n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv != 0 || n_keys <= 0) return 0;
    return tiled_cache_floats(n_tok, n_head, n_head_kv, n_keys);
}

void attention_launch(const AttentionArgs& p, cudaStream_t stream) {
    if (p.hd <= 0 || p.hd > kMaxHeadDim)
        throw std::invalid_argument("cuda attention: head_dim " + std::to_string(p.hd) + " must be in 1..256");
    if (p.n_head <= 0 || p.n_head_kv <= 0 || p.n_head % p.n_head_kv != 0)
        throw std::invalid_argument("cuda attention: n_head " + std::to_string(p.n_head) +
                                    " is not a multiple of n_head_kv " + std::to_string(p.n_head_kv));
    if (p.n_tok < 0 || p.n_ctx <= 0) throw std::invalid_argument("cuda attention: bad shape");
    if (p.split < 0 || p.split > 4) throw std::invalid_argument("cuda attention: split must be 0..4");
    if (p.n_tok == 0) return;
    const bool have_scratch = p.scratch && p.scratch_floats >= attention_scratch_floats(p.n_tok, p.n_head, p.hd, p.n_ctx);
    if (p.split == 2 && !have_scratch) throw std::invalid_argument("cuda attention: split-K needs scratch");
    // Auto: split when few (token, head) rows would leave the GPU idle over a long key range.
    const bool split = p.split == 2 || (p.split == 0 && have_scratch && p.n_tok <= 8 &&
                                        (int64_t)p.n_tok * p.n_head < 512 && p.max_pos >= 2 * kAttnTile);
    if (split) {
        SplitLayout L;
        L.n_ctx = p.n_ctx;
        L.n_tiles = (int)((p.n_ctx + kAttnTile - 1) / kAttnTile);
        L.hd = p.hd;
        L.scores = p.scratch;
        L.tmax = L.scores + (size_t)p.n_tok * p.n_head * p.n_ctx;
        L.part = L.tmax + (size_t)p.n_tok * p.n_head * L.n_tiles;
        const int64_t last = p.max_pos >= 0 && p.max_pos < p.n_ctx ? p.max_pos : p.n_ctx - 1;
        const dim3 grid((unsigned)(last / kAttnTile + 1), (unsigned)p.n_head, (unsigned)p.n_tok);
        if (p.cache_f16) {
            attn_split_scores<true><<<grid, kThreads, 0, stream>>>(p, L);
            attn_split_tiles<true><<<grid, kThreads, 0, stream>>>(p, L);
        } else {
            attn_split_scores<false><<<grid, kThreads, 0, stream>>>(p, L);
            attn_split_tiles<false><<<grid, kThreads, 0, stream>>>(p, L);
        }
        Q3_CUDA_CHECK_LAUNCH();
        attn_split_combine<<<dim3((unsigned)p.n_head, (unsigned)p.n_tok), kThreads, 0, stream>>>(p, L);
        Q3_CUDA_CHECK_LAUNCH();
        return;
    }
    // Prefill: the tiled kernel (or forced by split = 3); the one-block kernel otherwise, and
    // where the device lacks the tiled kernel's shared memory.
    const bool tiled = p.split == 3 || ((p.split == 0 || p.split == 1) && p.n_tok > kTiledMinTok);
    if (tiled && tiled_attention(p, stream)) return;
    const dim3 grid((unsigned)p.n_head, (unsigned)(p.n_tok < 65535 ? p.n_tok : 65535));
    // Scores kept in shared memory when every position is known to fit (tokens whose position
    // exceeds max_pos recompute them instead; never an out-of-bounds write).
    const int64_t n_cached = p.max_pos >= 0 && p.max_pos < kMaxCachedScores ? p.max_pos + 1 : 0;
    const size_t smem = (size_t)n_cached * sizeof(float);
    if (p.cache_f16)
        attention_kernel<true><<<grid, kThreads, smem, stream>>>(p, n_cached);
    else
        attention_kernel<false><<<grid, kThreads, smem, stream>>>(p, n_cached);
    Q3_CUDA_CHECK_LAUNCH();
}

void attention(const AttentionArgs& args, void* stream) { attention_launch(args, to_stream(stream)); }

}  // namespace qwen3moe::cuda
