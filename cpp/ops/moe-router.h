// MoE router: softmax over all experts, top-k by probability, renormalised weights.
#pragma once
#include <cstdint>

namespace qwen3moe {

// Top-k of probs[n_expert]: the k largest p, ties -> lower expert index, ranked by descending p
// (ties lower index first). Weights: S = +0.0f; for r in rank order S = S + p_r; then
// w_r = canon_div(p_r, S) with the full sum S.
void router_topk(const float* probs, int n_expert, int k, int32_t* idx, float* w);

// The selection-sort form of the rule (the definition router_topk is tested against).
void router_topk_selection(const float* probs, int n_expert, int k, int32_t* idx, float* w);

// logits -> probs (softmax_canon) -> idx, w (router_topk).
void moe_router(const float* logits, int n_expert, int k, float* probs, int32_t* idx, float* w);

}  // namespace qwen3moe
