// MoE router top-k: selection with strict '>' so the lowest index wins every tie.
#include "ops/moe-router.h"

#include <cstdint>

#include "ops/canon.h"
#include "ops/softmax.h"

namespace qwen3moe {

void router_topk(const float* probs, int n_expert, int k, int32_t* idx, float* w) {
    // Rule: top-k = the k largest p, ties -> lower expert index, ranked by descending p.
    // Selection sort over a "taken" mask: at rank r pick the first (lowest) index whose p is
    // strictly greater than every other untaken p. NaN probabilities are never picked while a
    // number is left (comparisons with NaN are false), and never crash.
    // The taken set is a bitmap (one lookup per candidate instead of a scan of the ranks picked
    // so far); the selection itself is unchanged.
    constexpr int kBitmapExperts = 4096;
    uint64_t taken_bits[kBitmapExperts / 64] = {};
    const bool bitmap = n_expert <= kBitmapExperts;
    auto is_taken = [&](int e, int r) {
        if (bitmap) return ((taken_bits[e >> 6] >> (e & 63)) & 1u) != 0;
        for (int j = 0; j < r; ++j)
            if (idx[j] == e) return true;
        return false;
    };
    for (int r = 0; r < k; ++r) {
        int best = -1;
        for (int e = 0; e < n_expert; ++e) {
            if (is_taken(e, r)) continue;
            if (best < 0 || probs[e] > probs[best] || (probs[best] != probs[best] && probs[e] == probs[e])) best = e;
        }
        idx[r] = best;
        if (bitmap && best >= 0) taken_bits[best >> 6] |= (uint64_t)1 << (best & 63);
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
