// Capture vocabulary, spec validation and host buffers.
#include "runtime/capture.h"

#include <stdexcept>

namespace qwen3moe {

namespace {
const char* const kNames[kStageCount] = {
    "embed", "attn_norm", "q", "k", "v", "q_normed", "k_normed", "q_rope", "k_rope", "attn_out",
    "attn_proj", "ffn_inp", "ffn_norm", "moe_router_logits", "moe_router_probs",
    "moe_router_indices", "moe_router_weights", "moe_expert_gate", "moe_expert_up",
    "moe_expert_swiglu", "moe_expert_out", "moe_ffn_out", "layer_out", "final_norm", "logits",
};
}  // namespace

const char* stage_name(Stage s) {
    const int i = (int)s;
    return (i >= 0 && i < kStageCount) ? kNames[i] : "?";
}

Stage stage_from_name(const std::string& name) {
    for (int i = 0; i < kStageCount; ++i)
        if (name == kNames[i]) return (Stage)i;
    std::string msg = "unknown capture stage '" + name + "'; valid stages: ";
    for (int i = 0; i < kStageCount; ++i) {
        if (i) msg += ", ";
        msg += kNames[i];
    }
    throw std::invalid_argument(msg);
}

bool stage_is_layer(Stage s) { return s != Stage::embed && s != Stage::final_norm && s != Stage::logits; }

bool stage_is_int(Stage s) { return s == Stage::moe_router_indices; }

std::vector<int64_t> stage_row_shape(Stage s, const CaptureDims& d) {
    switch (s) {
        case Stage::q:
        case Stage::q_normed:
        case Stage::q_rope:
        case Stage::attn_out:
            return {d.q_dim};
        case Stage::k:
        case Stage::v:
        case Stage::k_normed:
        case Stage::k_rope:
            return {d.kv_dim};
        case Stage::moe_router_logits:
        case Stage::moe_router_probs:
            return {d.n_expert};
        case Stage::moe_router_indices:
        case Stage::moe_router_weights:
            return {d.n_used};
        case Stage::moe_expert_gate:
        case Stage::moe_expert_up:
        case Stage::moe_expert_swiglu:
            return {d.n_used, d.n_ff_exp};
        case Stage::moe_expert_out:
            return {d.n_used, d.n_embd};
        case Stage::logits:
            return {d.n_vocab};
        default:
            return {d.n_embd};
    }
}

CaptureSpec::CaptureSpec(const std::vector<std::string>& stages, const std::vector<int>& layers, int n_layer) {
    for (const std::string& name : stages) {
        const Stage s = stage_from_name(name);
        if (!stages_[(int)s]) ++n_stages_;
        stages_[(int)s] = true;
    }
    layers_.assign(n_layer, layers.empty());
    for (int l : layers) {
        if (l < 0 || l >= n_layer)
            throw std::out_of_range("capture layer " + std::to_string(l) + " out of range: the model has n_layer = " +
                                    std::to_string(n_layer) + " layers (0.." + std::to_string(n_layer - 1) + ")");
        layers_[l] = true;
    }
}

std::vector<int> CaptureSpec::layer_list() const {
    std::vector<int> out;
    for (int l = 0; l < (int)layers_.size(); ++l)
        if (layers_[l]) out.push_back(l);
    return out;
}

void CaptureSink::prepare(const CaptureSpec& spec, const CaptureDims& dims, int64_t n_tokens) {
    bufs_.clear();
    const std::vector<int> layers = spec.layer_list();
    for (int si = 0; si < kStageCount; ++si) {
        const Stage s = (Stage)si;
        if (!spec.wants(s)) continue;
        std::vector<int> ls = stage_is_layer(s) ? layers : std::vector<int>{-1};
        for (int l : ls) {
            CaptureBuffer& b = bufs_[{si, l}];
            b.stage = s;
            b.layer = l;
            b.rows = n_tokens;
            b.row_shape = stage_row_shape(s, dims);
            b.row_elems = 1;
            for (int64_t x : b.row_shape) b.row_elems *= x;
            if (stage_is_int(s))
                b.i.assign((size_t)(n_tokens * b.row_elems), 0);
            else
                b.f.assign((size_t)(n_tokens * b.row_elems), 0.0f);
        }
    }
}

CaptureBuffer* CaptureSink::find(Stage s, int layer) {
    auto it = bufs_.find({(int)s, stage_is_layer(s) ? layer : -1});
    return it == bufs_.end() ? nullptr : &it->second;
}

}  // namespace qwen3moe
