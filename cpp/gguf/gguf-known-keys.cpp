// Value-type checks for the metadata keys this engine (or llama.cpp, for the same meaning)
// interprets. A hostile file that stores, say, tokenizer.ggml.token_type as an ARRAY of INT8
// must be rejected at load time instead of being read as INT32 later. Unknown keys are
// accepted with any type. The rules follow llama.cpp's strict GGUFMeta checks: hparams are
// unsigned integers (head_count / head_count_kv / feed_forward_length may also be per-layer
// arrays of them), epsilons and rope bases FLOAT32, token ids UINT32.
#include "gguf/gguf-internal.h"

namespace qwen3moe::gguf_detail {
namespace {

enum class Expect {
    U32,           // exactly UINT32
    UINT,          // any unsigned integer scalar (UINT8/16/32/64)
    UINT_OR_ARR,   // unsigned scalar, or ARRAY of an unsigned type (per-layer values)
    F32,           // exactly FLOAT32
    BOOL,          // BOOL
    STRING,        // STRING
    ARR_STRING,    // ARRAY of STRING
    ARR_F32,       // ARRAY of FLOAT32
    ARR_I32,       // ARRAY of INT32
};

struct Rule {
    const char* key;  // full key (general.*, tokenizer.*) or suffix after "<arch>."
    Expect expect;
};

constexpr Rule kGlobalRules[] = {
    {"general.architecture", Expect::STRING},
    {"general.alignment", Expect::U32},
    {"general.file_type", Expect::U32},
    {"general.quantization_version", Expect::U32},
    {"general.name", Expect::STRING},
    {"general.type", Expect::STRING},
    {"general.author", Expect::STRING},
    {"general.version", Expect::STRING},
    {"general.organization", Expect::STRING},
    {"general.basename", Expect::STRING},
    {"general.finetune", Expect::STRING},
    {"general.description", Expect::STRING},
    {"general.quantized_by", Expect::STRING},
    {"general.size_label", Expect::STRING},
    {"general.license", Expect::STRING},
    {"general.url", Expect::STRING},
    {"general.repo_url", Expect::STRING},
    {"general.tags", Expect::ARR_STRING},
    {"general.languages", Expect::ARR_STRING},
    {"tokenizer.ggml.model", Expect::STRING},
    {"tokenizer.ggml.pre", Expect::STRING},
    {"tokenizer.ggml.tokens", Expect::ARR_STRING},
    {"tokenizer.ggml.scores", Expect::ARR_F32},
    {"tokenizer.ggml.token_type", Expect::ARR_I32},
    {"tokenizer.ggml.token_type_count", Expect::U32},
    {"tokenizer.ggml.merges", Expect::ARR_STRING},
    {"tokenizer.ggml.bos_token_id", Expect::U32},
    {"tokenizer.ggml.eos_token_id", Expect::U32},
    {"tokenizer.ggml.unknown_token_id", Expect::U32},
    {"tokenizer.ggml.seperator_token_id", Expect::U32},
    {"tokenizer.ggml.padding_token_id", Expect::U32},
    {"tokenizer.ggml.cls_token_id", Expect::U32},
    {"tokenizer.ggml.mask_token_id", Expect::U32},
    {"tokenizer.ggml.eot_token_id", Expect::U32},
    {"tokenizer.ggml.eom_token_id", Expect::U32},
    {"tokenizer.ggml.add_bos_token", Expect::BOOL},
    {"tokenizer.ggml.add_eos_token", Expect::BOOL},
    {"tokenizer.ggml.add_space_prefix", Expect::BOOL},
    {"tokenizer.chat_template", Expect::STRING},
};

constexpr Rule kArchRules[] = {
    {"vocab_size", Expect::UINT},
    {"context_length", Expect::UINT},
    {"embedding_length", Expect::UINT},
    {"block_count", Expect::UINT},
    {"leading_dense_block_count", Expect::UINT},
    {"feed_forward_length", Expect::UINT_OR_ARR},
    {"expert_feed_forward_length", Expect::UINT},
    {"expert_shared_feed_forward_length", Expect::UINT},
    {"expert_count", Expect::UINT},
    {"expert_used_count", Expect::UINT},
    {"expert_shared_count", Expect::UINT},
    {"expert_gating_func", Expect::UINT},
    {"expert_weights_scale", Expect::F32},
    {"expert_weights_norm", Expect::BOOL},
    {"logit_scale", Expect::F32},
    {"attention.head_count", Expect::UINT_OR_ARR},
    {"attention.head_count_kv", Expect::UINT_OR_ARR},
    {"attention.key_length", Expect::UINT},
    {"attention.value_length", Expect::UINT},
    {"attention.layer_norm_epsilon", Expect::F32},
    {"attention.layer_norm_rms_epsilon", Expect::F32},
    {"attention.clamp_kqv", Expect::F32},
    {"attention.sliding_window", Expect::UINT},
    {"rope.dimension_count", Expect::UINT},
    {"rope.freq_base", Expect::F32},
    {"rope.scaling.type", Expect::STRING},
    {"rope.scaling.factor", Expect::F32},
    {"rope.scaling.attn_factor", Expect::F32},
    {"rope.scaling.original_context_length", Expect::UINT},
    {"rope.scaling.finetuned", Expect::BOOL},
};

bool is_unsigned(GGUFType t) {
    return t == GGUFType::UINT8 || t == GGUFType::UINT16 || t == GGUFType::UINT32 || t == GGUFType::UINT64;
}

bool matches(const GGUFValue& v, Expect e) {
    switch (e) {
        case Expect::U32: return v.type == GGUFType::UINT32;
        case Expect::UINT: return is_unsigned(v.type);
        case Expect::UINT_OR_ARR:
            return is_unsigned(v.type) || (v.type == GGUFType::ARRAY && is_unsigned(v.elem_type));
        case Expect::F32: return v.type == GGUFType::FLOAT32;
        case Expect::BOOL: return v.type == GGUFType::BOOL;
        case Expect::STRING: return v.type == GGUFType::STRING;
        case Expect::ARR_STRING: return v.type == GGUFType::ARRAY && v.elem_type == GGUFType::STRING;
        case Expect::ARR_F32: return v.type == GGUFType::ARRAY && v.elem_type == GGUFType::FLOAT32;
        case Expect::ARR_I32: return v.type == GGUFType::ARRAY && v.elem_type == GGUFType::INT32;
    }
    return false;
}

const char* expect_name(Expect e) {
    switch (e) {
        case Expect::U32: return "UINT32";
        case Expect::UINT: return "an unsigned integer";
        case Expect::UINT_OR_ARR: return "an unsigned integer or ARRAY of unsigned integers";
        case Expect::F32: return "FLOAT32";
        case Expect::BOOL: return "BOOL";
        case Expect::STRING: return "STRING";
        case Expect::ARR_STRING: return "ARRAY of STRING";
        case Expect::ARR_F32: return "ARRAY of FLOAT32";
        case Expect::ARR_I32: return "ARRAY of INT32";
    }
    return "?";
}

void check(const std::string& key, const GGUFValue& v, Expect e, uint64_t at) {
    if (!matches(v, e))
        fail("key '" + quote(key) + "': expected " + expect_name(e) + ", found " + describe_type(v), at);
}

}  // namespace

void check_known_key(const std::string& key, const GGUFValue& v, const std::string& arch, uint64_t at) {
    for (const Rule& r : kGlobalRules)
        if (key == r.key) return check(key, v, r.expect, at);
    if (arch.empty() || key.size() <= arch.size() + 1 || key.compare(0, arch.size(), arch) != 0 ||
        key[arch.size()] != '.')
        return;
    for (const Rule& r : kArchRules)
        if (key.compare(arch.size() + 1, std::string::npos, r.key) == 0) return check(key, v, r.expect, at);
}

}  // namespace qwen3moe::gguf_detail
