// MoE router top-k: selection with strict '>' so the lowest index wins every tie.
#include "ops/moe-router.h"

#include "ops/canon.h"
#include "ops/softmax.h"

namespace qwen3moe {

void router_topk(const float* probs, int n_expert, int k, int32_t* idx, float* w) {
    // Rule: top-k = the k largest p, ties -> lower expert index, ranked by descending p.
    // Selection sort over a "taken" mask: at rank r pick the first (lowest) index whose p is
    // strictly greater than every other untaken p. NaN probabilities are never picked while a
    // number is left (comparisons with NaN are false), and never crash.
    for (int r = 0; r < k; ++r) {
        int best = -1;
        for (int e = 0; e < n_expert; ++e) {
            bool taken = false;
            for (int j = 0; j < r; ++j)
                if (idx[j] == e) {
                    taken = true;
                    break;
                }
            if (taken) continue;
            if (best < 0 || probs[e] > probs[best] || (probs[best] != probs[best] && probs[e] == probs[e])) best = e;
        }
        idx[r] = best;
    }
    // Rule: S = +0.0f; for r: S = S + p_r; w_r = canon_div(p_r, S)   (S = the full sum)
    float s = 0.0f;
    for (int r = 0; r < k; ++r) s = s + probs[idx[r]];
    for (int r = 0; r < k; ++r) w[r] = canon_div(probs[idx[r]], s);
}

void moe_router(const float* logits, int n_expert, int k, float* probs, int32_t* idx, float* w) {
    softmax_canon(logits, probs, n_expert);
    router_topk(probs, n_expert, k, idx, w);
}

}  // namespace qwen3moe
