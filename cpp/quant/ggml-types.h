// GGML tensor type ids as stored in GGUF files, with their block geometry.
// Every id llama.cpp has assigned is listed so the reader can size any tensor; which types
// this engine can compute with is a separate question (ggml_type_supported).
#pragma once
#include <cstdint>

namespace qwen3moe {

enum GGMLType : uint32_t {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ2_XXS = 16,
    GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18,
    GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35,
    GGML_TYPE_MXFP4 = 39,
    GGML_TYPE_COUNT = 40,
};

struct GGMLTypeTraits {
    const char* name;    // "Q4_K"
    int64_t block_size;  // values per block (1 for plain types)
    int64_t type_size;   // bytes per block
};

// nullptr for ids that are unassigned or out of range.
const GGMLTypeTraits* ggml_type_traits(uint32_t type);
// Name for messages: "Q4_K", or "type#77" for unknown ids.
const char* ggml_type_name(uint32_t type);
// Types this engine can dequantise and compute with: F32 F16 BF16 Q4_0 Q8_0 Q4_K Q5_K Q6_K.
bool ggml_type_supported(uint32_t type);

}  // namespace qwen3moe
