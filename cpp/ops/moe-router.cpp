// MoE router top-k: selection with strict '>' so the lowest index wins every tie.
#include "ops/moe-router.h"

#include <cstdint>

#include "ops/canon.h"
#include "ops/softmax.h"

namespace qwen3moe {

namespace {
// The rule's ranking: e ranks before b iff p_e > p_b, or p_b is NaN and p_e is not (equal values,
// +0 and -0, and all NaNs tie; ties go to the lower index).
inline bool ranks_before(float pe, float pb) { return pe > pb || (pb != pb && pe == pe); }

// Rule: S = +0.0f; for r: S = S + p_r; w_r = canon_div(p_r, S)   (S = the full sum)
void router_weights(const float* probs, int k, const int32_t* idx, float* w) {
    float s = 0.0f;
    for (int r = 0; r < k; ++r) s = s + probs[idx[r]];
    for (int r = 0; r < k; ++r) w[r] = canon_div(probs[idx[r]], s);
}
}  // namespace

void router_topk(const float* probs, int n_expert, int k, int32_t* idx, float* w) {
    // One pass instead of k: experts in ascending index are inserted into the ranked list of the
    // best k so far, after every entry that does not rank below them (ties: the earlier, lower
    // index stays first). That is the order the selection sort's rank-by-rank scan produces
    // (router_topk_selection), ~k times fewer comparisons.
    constexpr int kMaxInsertK = 64;
    if (k < 1 || k > kMaxInsertK || k > n_expert) {
        router_topk_selection(probs, n_expert, k, idx, w);
        return;
    }
    int n = 0;  // entries in idx[0..n)
    for (int e = 0; e < n_expert; ++e) {
        const float pe = probs[e];
        if (n == k && !ranks_before(pe, probs[idx[k - 1]])) continue;  // not among the best k
        int j = n < k ? n : k - 1;  // insert position: after every entry that e does not rank before
        while (j > 0 && ranks_before(pe, probs[idx[j - 1]])) {
            idx[j] = idx[j - 1];
            --j;
        }
        idx[j] = e;
        if (n < k) ++n;
    }
    router_weights(probs, k, idx, w);
}

void router_topk_selection(const float* probs, int n_expert, int k, int32_t* idx, float* w) {
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
    router_weights(probs, k, idx, w);
}

void moe_router(const float* logits, int n_expert, int k, float* probs, int32_t* idx, float* w) {
    softmax_canon(logits, probs, n_expert);
    router_topk(probs, n_expert, k, idx, w);
}

}  // namespace qwen3moe
