// decode-qk-rope.cu — the decode step's q/k head norm + RoPE and KV append in one launch:
// warp j < n_head runs the q head j, warp n_head + h the k head h (K stored in the cache) and
// then stores V head h, each with the same device functions as norm_rope / kv_store.
#include <stdexcept>

#include "cuda/decode-common.cuh"
#include "cuda/decode-ops.h"
#include "cuda/qk-norm-rope.cuh"

namespace qwen3moe::cuda {

namespace {
constexpr int kMaxHeadDim = 256;

__global__ void __launch_bounds__(kDecThreads) dec_qk_rope_kernel(DecQkRopeArgs p) {
    __shared__ float sh[kDecWarps][kMaxHeadDim];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int j = blockIdx.x * kDecWarps + warp;
    pdl_wait();
    pdl_launch_next();
    if (j < p.q.n_heads) {
        warp_norm_rope_head(p.q, j, sh[warp]);
    } else if (j < p.q.n_heads + p.k.n_heads) {
        const int h = j - p.q.n_heads;
        warp_norm_rope_head(p.k, h, sh[warp]);
        const int64_t pos = p.k.pos[0];
        if (pos >= 0 && pos < p.k.n_pos) {  // never write outside the cache (as kv_store)
            const int64_t row = (int64_t)p.k.n_heads * p.k.hd;
            for (int i = lane; i < p.k.hd; i += kWarp)
                cache_store(p.v_cache, p.k.cache_f16, pos * row + (int64_t)h * p.k.hd + i, p.v[(int64_t)h * p.k.hd + i]);
        }
    }
}
}  // namespace

void dec_qk_rope(const DecQkRopeArgs& p, void* stream, bool pdl) {
    if (p.q.n_tok != 1 || p.k.n_tok != 1 || p.q.hd != p.k.hd || p.q.hd <= 0 || p.q.hd % 2 || p.q.hd > kMaxHeadDim)
        throw std::invalid_argument("dec_qk_rope: one token, equal even head_dim <= 256");
    if (!p.k.cache || !p.v_cache || !p.v || p.q.cache) throw std::invalid_argument("dec_qk_rope: bad cache arguments");
    const int warps = p.q.n_heads + p.k.n_heads;
    launch_dec(dec_qk_rope_kernel, dim3(ceil_div_u(warps, kDecWarps)), 0, stream, pdl, p);
}

}  // namespace qwen3moe::cuda
