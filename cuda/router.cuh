// router.cuh — MoE routing after the router logits (canonical definition, ARCHITECTURE.md 2):
//   m = max l;  e_i = canon_exp(l_i - m);  Z = canon_sum(e) (32-lane rule);  p_i = canon_div(e_i, Z)
//   top-k: the k largest p, ties -> lower index, ranked by descending p
//   S = +0.0f; for r: S = S + p_r;  w_r = canon_div(p_r, S)
#pragma once
#include "cuda/common.cuh"
#include "cuda/cuda-ops.h"

namespace qwen3moe::cuda {

void router_topk_launch(const float* logits, int n_tok, int n_expert, int k, float* probs, int32_t* ids,
                        float* weights, cudaStream_t stream);

}  // namespace qwen3moe::cuda
