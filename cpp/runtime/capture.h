// Captures: the stage vocabulary (ARCHITECTURE.md section 5), a capture spec (which stages on
// which layers) and the host buffers that receive them, one row per token.
//
// Stage shapes per token row: embed [n_embd]; per layer attn_norm [n_embd], q [n_head*hd],
// k, v [n_head_kv*hd], q_normed, k_normed, q_rope, k_rope (as q / k), attn_out [n_head*hd],
// attn_proj, ffn_inp, ffn_norm [n_embd], moe_router_logits, moe_router_probs [n_expert],
// moe_router_indices [k] (int32), moe_router_weights [k], moe_expert_gate, moe_expert_up,
// moe_expert_swiglu [k, n_ff_exp], moe_expert_out [k, n_embd], moe_ffn_out, layer_out [n_embd];
// then final_norm [n_embd], logits [n_vocab]. Only the requested (stage, layer) pairs get
// buffers and are copied off the backend.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace qwen3moe {

enum class Stage : int {
    embed,
    attn_norm, q, k, v, q_normed, k_normed, q_rope, k_rope, attn_out, attn_proj, ffn_inp,
    ffn_norm, moe_router_logits, moe_router_probs, moe_router_indices, moe_router_weights,
    moe_expert_gate, moe_expert_up, moe_expert_swiglu, moe_expert_out, moe_ffn_out, layer_out,
    final_norm, logits,
    count,
};
constexpr int kStageCount = (int)Stage::count;

const char* stage_name(Stage s);
// Throws std::invalid_argument listing the valid names.
Stage stage_from_name(const std::string& name);
bool stage_is_layer(Stage s);  // false for embed, final_norm, logits
bool stage_is_int(Stage s);    // moe_router_indices (int32)

// Model dimensions that fix the stage shapes.
struct CaptureDims {
    int64_t n_embd = 0;    // hidden size
    int64_t q_dim = 0;     // n_head * head_dim
    int64_t kv_dim = 0;    // n_head_kv * head_dim
    int64_t n_expert = 0;  // experts
    int64_t n_used = 0;    // experts per token (k)
    int64_t n_ff_exp = 0;  // expert hidden size
    int64_t n_vocab = 0;   // vocabulary
    int n_layer = 0;       // layers
};
// Per-token shape of a stage (e.g. {k, n_ff_exp}); the row holds the product.
std::vector<int64_t> stage_row_shape(Stage s, const CaptureDims& d);

class CaptureSpec {
public:
    CaptureSpec() = default;
    // Stage names (each validated) and layers (empty = all layers; each in [0, n_layer) else
    // std::out_of_range naming n_layer).
    CaptureSpec(const std::vector<std::string>& stages, const std::vector<int>& layers, int n_layer);
    bool empty() const { return n_stages_ == 0; }
    bool wants(Stage s) const { return stages_[(int)s]; }
    bool wants(Stage s, int layer) const {
        return stages_[(int)s] && (!stage_is_layer(s) || (layer >= 0 && layer < (int)layers_.size() && layers_[layer]));
    }
    std::vector<int> layer_list() const;

private:
    bool stages_[kStageCount] = {};  // requested stages
    int n_stages_ = 0;               // how many requested
    std::vector<bool> layers_;       // [n_layer] requested layers
};

// One captured tensor on the host: rows = tokens, row_shape per token.
struct CaptureBuffer {
    Stage stage = Stage::embed;    // which stage
    int layer = -1;                // layer, -1 for embed / final_norm / logits
    int64_t rows = 0;              // tokens
    std::vector<int64_t> row_shape;  // per-token shape
    int64_t row_elems = 0;         // product of row_shape
    std::vector<float> f;          // [rows * row_elems] for float stages
    std::vector<int32_t> i;        // [rows * row_elems] for moe_router_indices
    void* row(int64_t r) { return stage_is_int(stage) ? (void*)(i.data() + r * row_elems) : (void*)(f.data() + r * row_elems); }
};

// Host buffers for one forward call: one per requested (stage, layer).
class CaptureSink {
public:
    void prepare(const CaptureSpec& spec, const CaptureDims& dims, int64_t n_tokens);
    // nullptr when (stage, layer) was not requested.
    CaptureBuffer* find(Stage s, int layer);
    std::map<std::pair<int, int>, CaptureBuffer>& buffers() { return bufs_; }

private:
    std::map<std::pair<int, int>, CaptureBuffer> bufs_;  // key (stage, layer)
};

}  // namespace qwen3moe
