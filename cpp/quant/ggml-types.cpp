// Block geometry of every GGML type id (sizes as defined by the GGUF format).
#include "quant/ggml-types.h"

namespace qwen3moe {

namespace {
struct Entry {
    uint32_t id;
    GGMLTypeTraits traits;
};
constexpr Entry kTypes[] = {
    {GGML_TYPE_F32, {"F32", 1, 4}},         {GGML_TYPE_F16, {"F16", 1, 2}},
    {GGML_TYPE_Q4_0, {"Q4_0", 32, 18}},     {GGML_TYPE_Q4_1, {"Q4_1", 32, 20}},
    {GGML_TYPE_Q5_0, {"Q5_0", 32, 22}},     {GGML_TYPE_Q5_1, {"Q5_1", 32, 24}},
    {GGML_TYPE_Q8_0, {"Q8_0", 32, 34}},     {GGML_TYPE_Q8_1, {"Q8_1", 32, 36}},
    {GGML_TYPE_Q2_K, {"Q2_K", 256, 84}},    {GGML_TYPE_Q3_K, {"Q3_K", 256, 110}},
    {GGML_TYPE_Q4_K, {"Q4_K", 256, 144}},   {GGML_TYPE_Q5_K, {"Q5_K", 256, 176}},
    {GGML_TYPE_Q6_K, {"Q6_K", 256, 210}},   {GGML_TYPE_Q8_K, {"Q8_K", 256, 292}},
    {GGML_TYPE_IQ2_XXS, {"IQ2_XXS", 256, 66}}, {GGML_TYPE_IQ2_XS, {"IQ2_XS", 256, 74}},
    {GGML_TYPE_IQ3_XXS, {"IQ3_XXS", 256, 98}}, {GGML_TYPE_IQ1_S, {"IQ1_S", 256, 50}},
    {GGML_TYPE_IQ4_NL, {"IQ4_NL", 32, 18}}, {GGML_TYPE_IQ3_S, {"IQ3_S", 256, 110}},
    {GGML_TYPE_IQ2_S, {"IQ2_S", 256, 82}},  {GGML_TYPE_IQ4_XS, {"IQ4_XS", 256, 136}},
    {GGML_TYPE_I8, {"I8", 1, 1}},           {GGML_TYPE_I16, {"I16", 1, 2}},
    {GGML_TYPE_I32, {"I32", 1, 4}},         {GGML_TYPE_I64, {"I64", 1, 8}},
    {GGML_TYPE_F64, {"F64", 1, 8}},         {GGML_TYPE_IQ1_M, {"IQ1_M", 256, 56}},
    {GGML_TYPE_BF16, {"BF16", 1, 2}},       {GGML_TYPE_TQ1_0, {"TQ1_0", 256, 54}},
    {GGML_TYPE_TQ2_0, {"TQ2_0", 256, 66}},  {GGML_TYPE_MXFP4, {"MXFP4", 32, 17}},
};
thread_local char unknown_name[24];
}  // namespace

const GGMLTypeTraits* ggml_type_traits(uint32_t type) {
    for (const Entry& e : kTypes)
        if (e.id == type) return &e.traits;
    return nullptr;
}

const char* ggml_type_name(uint32_t type) {
    const GGMLTypeTraits* t = ggml_type_traits(type);
    if (t) return t->name;
    // "type#<id>" without snprintf to keep this allocation-free
    char digits[12];
    int n = 0;
    uint32_t v = type;
    do {
        digits[n++] = char('0' + v % 10);
        v /= 10;
    } while (v && n < 11);
    int k = 0;
    for (const char* p = "type#"; *p; ++p) unknown_name[k++] = *p;
    while (n) unknown_name[k++] = digits[--n];
    unknown_name[k] = 0;
    return unknown_name;
}

bool ggml_type_supported(uint32_t type) {
    switch (type) {
        case GGML_TYPE_F32:
        case GGML_TYPE_F16:
        case GGML_TYPE_BF16:
        case GGML_TYPE_Q4_0:
        case GGML_TYPE_Q8_0:
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K:
        case GGML_TYPE_Q6_K:
            return true;
        default:
            return false;
    }
}

}  // namespace qwen3moe
