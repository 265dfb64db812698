// Token embedding: the dequantised row of token_embd.
#pragma once
#include <cstdint>

#include "ops/matvec.h"

namespace qwen3moe {

// out[n_cols] = dequantize_row(token_embd row `token`). The caller validates the id.
void embed_token(const WeightMatrix& token_embd, int32_t token, float* out);

}  // namespace qwen3moe
