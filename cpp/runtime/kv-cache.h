// KV cache: per layer, K (after RoPE) and V rows for every position, [n_ctx][n_head_kv*head_dim].
// Element type: f32 in activations="f32" mode, f16 (canon_f32_to_f16, read back with
// canon_f16_to_f32) in activations="q8" mode (numerics contract). Allocated once at load.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qwen3moe {

class KVCache {
public:
    KVCache() = default;
    KVCache(int n_layer, int n_ctx, int kv_dim, bool f16);

    int n_layer() const { return n_layer_; }
    int n_ctx() const { return n_ctx_; }
    int kv_dim() const { return kv_dim_; }
    bool is_f16() const { return f16_; }
    size_t bytes() const { return f16_ ? (k16_.size() + v16_.size()) * 2 : (k32_.size() + v32_.size()) * 4; }

    // Store the K and V rows (kv_dim floats each) of position pos in layer il.
    void store(int il, int pos, const float* k, const float* v);

    // Base of layer il: rows of kv_dim elements, f32 or f16 (uint16_t bits) by is_f16().
    const void* k_layer(int il) const;
    const void* v_layer(int il) const;

private:
    int n_layer_ = 0;               // layers
    int n_ctx_ = 0;                 // positions per layer
    int kv_dim_ = 0;                // n_head_kv * head_dim
    bool f16_ = false;              // element type
    std::vector<float> k32_, v32_;  // [n_layer][n_ctx][kv_dim] when !f16_
    std::vector<uint16_t> k16_, v16_;  // [n_layer][n_ctx][kv_dim] when f16_
};

}  // namespace qwen3moe
