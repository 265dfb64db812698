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
