// Embedding lookup: dequantise one row (bit-exact for every supported type).
#include "ops/embed.h"

#include "quant/quant.h"

namespace qwen3moe {

void embed_token(const WeightMatrix& token_embd, int32_t token, float* out) {
    // Rule: embedding = dequantize_row of token_embd row `token`.
    dequantize_row(token_embd.type, token_embd.row(token), out, token_embd.n_cols);
}

}  // namespace qwen3moe
