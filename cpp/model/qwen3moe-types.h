// Types shared by the qwen3moe model and its backends: hyperparameters, weight descriptions.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ops/matvec.h"

namespace qwen3moe {

// Hyperparameters (GGUF keys qwen3moe.*), validated at load.
struct HParams {
    int n_layer = 0;          // block_count
    int n_embd = 0;           // embedding_length
    int n_head = 0;           // attention.head_count
    int n_head_kv = 0;        // attention.head_count_kv
    int head_dim = 0;         // attention.key_length (= value_length)
    int n_expert = 0;         // expert_count
    int n_expert_used = 0;    // expert_used_count (k)
    int n_ff_exp = 0;         // expert_feed_forward_length
    int n_vocab = 0;          // rows of token_embd
    int n_ctx_train = 0;      // context_length (0 when absent)
    float rope_freq_base = 0.0f;  // rope.freq_base
    float rms_eps = 0.0f;     // attention.layer_norm_rms_epsilon
    int q_dim() const { return n_head * head_dim; }
    int kv_dim() const { return n_head_kv * head_dim; }
};

// A weight tensor: a typed pointer into the mapped file (no copy).
struct Tensor {
    std::string name;               // GGUF name, e.g. "blk.3.attn_q.weight"
    int id = -1;                    // index in the model's tensor list (device copies key on it)
    uint32_t type = 0;              // GGMLType id
    int64_t ne[4] = {1, 1, 1, 1};   // ne[0] contiguous
    const uint8_t* data = nullptr;  // into the mapping
    size_t row_bytes = 0;           // bytes of one ne[0] row
    // The 2-D matrix (ne[1] rows of ne[0]); for 3-D expert tensors, expert e's slice.
    WeightMatrix matrix(int64_t e = 0) const {
        WeightMatrix m;
        m.type = type;
        m.n_cols = ne[0];
        m.n_rows = ne[1];
        m.row_bytes = row_bytes;
        m.data = data + (size_t)e * (size_t)ne[1] * row_bytes;
        return m;
    }
};

// A 1-D norm weight converted to f32 at load (small; any float or quantised type).
struct NormWeight {
    std::string name;      // GGUF name
    int id = -1;           // index in the model's tensor list
    std::vector<float> w;  // [n]
};

}  // namespace qwen3moe
