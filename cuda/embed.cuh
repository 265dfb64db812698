// embed.cuh — token embedding: the dequantised row of token_embd (dequant.cuh, bit-identical
// to the CPU's dequantize_row).
#pragma once
#include "cuda/common.cuh"

namespace qwen3moe::cuda {
void embed_launch(uint32_t type, const void* table, int64_t n_vocab, int64_t n, const int32_t* tokens, int n_tok,
                  float* out, cudaStream_t stream);
}  // namespace qwen3moe::cuda
