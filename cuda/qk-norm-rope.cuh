// qk-norm-rope.cuh — per-head RMSNorm (attn_q_norm / attn_k_norm over head_dim) followed by
// NEOX RoPE, plus the KV-cache append. Canonical definition:
//   y = (x * canon_rsqrt(canon_div(canon_dot(x, x, hd), hd) + eps)) * w          (per head)
//   with c = cos[pos][i], s = sin[pos][i] (host tables), h = hd / 2, i < h:
//   out[i] = canon_fma(y[i], c, -(y[i+h] * s));  out[i+h] = canon_fma(y[i], s, y[i+h] * c)
// Cache elements are f32 or f16 (canon_f32_to_f16) of the rotated values.
#pragma once
#include "cuda/common.cuh"
#include "cuda/cuda-ops.h"
#include "cuda/rms-norm.cuh"

namespace qwen3moe::cuda {

__device__ __forceinline__ void cache_store(void* cache, bool f16, int64_t i, float v) {
    if (f16)
        static_cast<uint16_t*>(cache)[i] = canon_f32_to_f16(v);
    else
        static_cast<float*>(cache)[i] = v;
}

__device__ __forceinline__ float cache_load(const void* cache, bool f16, int64_t i) {
    return f16 ? canon_f16_to_f32(static_cast<const uint16_t*>(cache)[i]) : static_cast<const float*>(cache)[i];
}

// One warp: y = RMSNorm(xh[0..hd)) * w and its NEOX rotation at position pos (0 <= pos,
// tables [n_pos][hd/2]): normed (optional) gets y, out the rotated head, cache (optional) the
// rotated values at elements cache_off + i. sh: hd floats of the warp's shared memory. out may
// be shared memory.
__device__ __forceinline__ void warp_norm_rope(const float* xh, const float* w, float eps, int hd, int64_t pos,
                                               const float* rope_cos, const float* rope_sin, float* normed, float* out,
                                               float* sh, void* cache, bool cache_f16, int64_t cache_off) {
    const int lane = threadIdx.x & 31;
    const int half = hd / 2;
    const float sc = warp_rms_scale(xh, hd, eps);
    for (int i = lane; i < hd; i += kWarp) {
        const float y = (xh[i] * sc) * w[i];
        sh[i] = y;
        if (normed) normed[i] = y;
    }
    __syncwarp();
    const float* cs = rope_cos + pos * half;
    const float* sn = rope_sin + pos * half;
    for (int i = lane; i < half; i += kWarp) {
        const float x0 = sh[i], x1 = sh[i + half];
        const float c = cs[i], s = sn[i];
        const float o0 = canon_fma(x0, c, -(x1 * s));
        const float o1 = canon_fma(x0, s, x1 * c);
        out[i] = o0;
        out[i + half] = o1;
        if (cache) {
            cache_store(cache, cache_f16, cache_off + i, o0);
            cache_store(cache, cache_f16, cache_off + i + half, o1);
        }
    }
}

// ---- the same values from registers (the fused decode attention's front) -------------------
//
// warp_norm_rope reads x, then w, then the RoPE rows, each load after the previous value was
// used: a chain of dependent global round trips, on the critical path of every layer in the
// decode attention (decode-attention.cu). Here a head, its norm weights and the RoPE rows are
// per-lane registers, so a caller loads the weights and the RoPE rows before its PDL wait
// (neither is written by any kernel), every head it needs right after the wait, and
// lane_norm_rope only computes: warp_norm_rope's operations on the same operands in the same
// order, so the same bits.
//
// Lane layout: with n = hd / 32 (hd % 32 == 0, hd <= kLaneHeadMax), lane l holds the elements
// l + 32 j, j < n — exactly the elements lane l accumulates in warp_canon_dot — split at
// a = (n + 1) / 2 into lo[j] = element l + 32 j (j < a) and hi[j] = element l + 32 (a + j)
// (j < n - a). When hd % 64 == 0, half = 32 a and hi[j] is element (l + 32 j) + half, the NEOX
// partner of lo[j], so the rotation needs no exchange; other head dims exchange the normed head
// through shared memory as warp_norm_rope does. Register indices are compile-time constants
// (loops over kLaneHalf with run-time guards), so nothing goes to local memory.
constexpr int kLaneHeadMax = 256;
constexpr int kLaneHalf = kLaneHeadMax / 64;  // lo and hi registers per lane

struct LaneHead {
    float lo[kLaneHalf], hi[kLaneHalf];

    // Lane's elements of x[0..hd) (registers past the head: +0.0f, never used).
    __device__ __forceinline__ void load(const float* x, int hd) {
        const int lane = threadIdx.x & (kWarp - 1), n = hd / kWarp, a = (n + 1) / 2;
#pragma unroll
        for (int j = 0; j < kLaneHalf; ++j) {
            lo[j] = j < a ? x[lane + kWarp * j] : 0.0f;
            hi[j] = j < n - a ? x[lane + kWarp * (a + j)] : 0.0f;
        }
    }

    // cache element off + i = element i of the head (cache_store: f16 or f32).
    __device__ __forceinline__ void store_cache(void* cache, bool f16, int64_t off, int hd) const {
        const int lane = threadIdx.x & (kWarp - 1), n = hd / kWarp, a = (n + 1) / 2;
#pragma unroll
        for (int j = 0; j < kLaneHalf; ++j) {
            if (j < a) cache_store(cache, f16, off + lane + kWarp * j, lo[j]);
            if (j < n - a) cache_store(cache, f16, off + lane + kWarp * (a + j), hi[j]);
        }
    }
};

// The RoPE rows at one position, for the rotation's index i = lane + 32 j < hd / 2 (j < a).
struct LaneRope {
    float c[kLaneHalf], s[kLaneHalf];

    // Tables [n_pos][hd / 2], 0 <= pos < n_pos.
    __device__ __forceinline__ void load(const float* rope_cos, const float* rope_sin, int64_t pos, int hd) {
        const int lane = threadIdx.x & (kWarp - 1), n = hd / kWarp, a = (n + 1) / 2, half = hd / 2;
        const float* cs = rope_cos + pos * half;
        const float* sn = rope_sin + pos * half;
#pragma unroll
        for (int j = 0; j < kLaneHalf; ++j) {
            const int i = lane + kWarp * j;
            const bool in = j < a && i < half;
            c[j] = in ? cs[i] : 0.0f;
            s[j] = in ? sn[i] : 0.0f;
        }
    }
};

// Where lane_norm_rope puts a head (warp_norm_rope's destinations, plus a second copy).
struct NormRopeDst {
    float* normed = nullptr;  // optional: y = RMSNorm(x) * w
    float* out = nullptr;     // the rotated head (may be shared memory)
    float* out2 = nullptr;    // optional: a second copy of the rotated head
    void* cache = nullptr;    // optional: the rotated values at elements cache_off + i
    bool cache_f16 = false;
    int64_t cache_off = 0;
    float* sh = nullptr;      // hd floats of the warp's shared memory (used when hd % 64 != 0)
};

// One warp: NH heads (same hd, position and RoPE rows; their own weights and destinations),
// each exactly warp_norm_rope(x, w, eps, hd, pos, ...). The heads' chains are independent and
// written side by side, so the scheduler overlaps them (one warp doing a q head and the k head
// pays little more than for one). Every lane of the warp calls it (warp_tree_sum).
template <int NH>
__device__ __forceinline__ void lane_norm_rope(const LaneHead (&x)[NH], const LaneHead (&w)[NH], const LaneRope& r,
                                               float eps, int hd, const NormRopeDst (&dst)[NH]) {
    const int lane = threadIdx.x & (kWarp - 1), n = hd / kWarp, a = (n + 1) / 2, half = hd / 2;
    // warp_rms_scale's expression (rms-norm.cuh; keep the two in step): lane partials over the
    // lane's elements in ascending index (lo, then hi) from +0.0f, warp_tree_sum, then
    // canon_rsqrt(canon_div(ss, (float)hd) + eps) ((float)hd: the same value as its (float)n).
    float sc[NH];
#pragma unroll
    for (int h = 0; h < NH; ++h) {
        float p = 0.0f;
#pragma unroll
        for (int j = 0; j < kLaneHalf; ++j)
            if (j < a) p = canon_fma(x[h].lo[j], x[h].lo[j], p);
#pragma unroll
        for (int j = 0; j < kLaneHalf; ++j)
            if (j < n - a) p = canon_fma(x[h].hi[j], x[h].hi[j], p);
        sc[h] = p;
    }
#pragma unroll
    for (int h = 0; h < NH; ++h) sc[h] = warp_tree_sum(sc[h]);
#pragma unroll
    for (int h = 0; h < NH; ++h) sc[h] = canon_rsqrt(canon_div(sc[h], (float)hd) + eps);
    // y = (x * sc) * w, and normed.
    LaneHead y[NH];
#pragma unroll
    for (int h = 0; h < NH; ++h) {
#pragma unroll
        for (int j = 0; j < kLaneHalf; ++j) {
            y[h].lo[j] = (x[h].lo[j] * sc[h]) * w[h].lo[j];
            y[h].hi[j] = (x[h].hi[j] * sc[h]) * w[h].hi[j];
            if (dst[h].normed) {
                if (j < a) dst[h].normed[lane + kWarp * j] = y[h].lo[j];
                if (j < n - a) dst[h].normed[lane + kWarp * (a + j)] = y[h].hi[j];
            }
        }
    }
    // out[i] = canon_fma(y[i], c, -(y[i+half] * s)), out[i+half] = canon_fma(y[i], s, y[i+half] * c).
    auto put = [](const NormRopeDst& d, int i, float v) {
        d.out[i] = v;
        if (d.out2) d.out2[i] = v;
        if (d.cache) cache_store(d.cache, d.cache_f16, d.cache_off + i, v);
    };
    // hd % 64 == 0: y[i + half] is hi[j] of the same lane; otherwise it sits in another lane and
    // the normed head goes through sh.
    const bool in_lane = 2 * a == n;
    if (!in_lane) {
#pragma unroll
        for (int h = 0; h < NH; ++h) {
#pragma unroll
            for (int j = 0; j < kLaneHalf; ++j) {
                if (j < a) dst[h].sh[lane + kWarp * j] = y[h].lo[j];
                if (j < n - a) dst[h].sh[lane + kWarp * (a + j)] = y[h].hi[j];
            }
        }
        __syncwarp();
    }
#pragma unroll
    for (int h = 0; h < NH; ++h) {
#pragma unroll
        for (int j = 0; j < kLaneHalf; ++j) {
            const int i = lane + kWarp * j;
            if (j >= a || i >= half) continue;  // in_lane: i < half for every j < a
            const float x0 = in_lane ? y[h].lo[j] : dst[h].sh[i];
            const float x1 = in_lane ? y[h].hi[j] : dst[h].sh[i + half];
            const float c = r.c[j], s = r.s[j];
            put(dst[h], i, canon_fma(x0, c, -(x1 * s)));
            put(dst[h], i + half, canon_fma(x0, s, x1 * c));
        }
    }
    if (!in_lane) __syncwarp();  // sh free again
}

// One warp: head idx = token * n_heads + head of p (norm, RoPE, optional cache store); sh is
// the warp's hd floats of shared memory. Positions outside [0, n_pos) poison the head.
__device__ __forceinline__ void warp_norm_rope_head(const NormRopeArgs& p, int64_t idx, float* sh) {
    const int lane = threadIdx.x & 31;
    const int64_t t = idx / p.n_heads;
    const int h = (int)(idx % p.n_heads);
    const int hd = p.hd;
    float* out = p.out + idx * hd;
    const int64_t pos = p.pos[t];
    if (pos < 0 || pos >= p.n_pos) {
        for (int i = lane; i < hd; i += kWarp) {
            out[i] = __int_as_float(0x7fc00000);
            if (p.normed) p.normed[idx * hd + i] = __int_as_float(0x7fc00000);
        }
        return;
    }
    warp_norm_rope(p.x + idx * hd, p.w, p.eps, hd, pos, p.rope_cos, p.rope_sin, p.normed ? p.normed + idx * hd : nullptr,
                   out, sh, p.cache, p.cache_f16, pos * ((int64_t)p.n_heads * hd) + (int64_t)h * hd);
}

void norm_rope_launch(const NormRopeArgs& args, cudaStream_t stream);
void kv_store_launch(const float* x, const int32_t* pos, int n_tok, int64_t row_len, void* cache,
                     int64_t n_ctx, bool cache_f16, cudaStream_t stream);

}  // namespace qwen3moe::cuda
