// KV cache storage; the f16 conversion is the canonical one of ops/canon.h.
#include "runtime/kv-cache.h"

#include "ops/canon.h"
#include "ops/vec-ops.h"

namespace qwen3moe {

KVCache::KVCache(int n_layer, int n_ctx, int kv_dim, bool f16)
    : n_layer_(n_layer), n_ctx_(n_ctx), kv_dim_(kv_dim), f16_(f16) {
    const size_t n = (size_t)n_layer * (size_t)n_ctx * (size_t)kv_dim;
    if (f16) {
        k16_.assign(n, 0);
        v16_.assign(n, 0);
    } else {
        k32_.assign(n, 0.0f);
        v32_.assign(n, 0.0f);
    }
}

void KVCache::store(int il, int pos, const float* k, const float* v) {
    const size_t off = ((size_t)il * n_ctx_ + pos) * kv_dim_;
    if (f16_) {
        const VecOps& ops = vec_ops();  // canon_f32_to_f16 per element (F16C where available)
        ops.f32_to_f16(k, k16_.data() + off, kv_dim_);
        ops.f32_to_f16(v, v16_.data() + off, kv_dim_);
    } else {
        for (int i = 0; i < kv_dim_; ++i) {
            k32_[off + i] = k[i];
            v32_[off + i] = v[i];
        }
    }
}

const void* KVCache::k_layer(int il) const {
    const size_t off = (size_t)il * n_ctx_ * kv_dim_;
    return f16_ ? (const void*)(k16_.data() + off) : (const void*)(k32_.data() + off);
}

const void* KVCache::v_layer(int il) const {
    const size_t off = (size_t)il * n_ctx_ * kv_dim_;
    return f16_ ? (const void*)(v16_.data() + off) : (const void*)(v32_.data() + off);
}

}  // namespace qwen3moe
