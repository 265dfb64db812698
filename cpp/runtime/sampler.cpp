// Canonical sampler (definition in sampler.h).
#include "runtime/sampler.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "ops/canon.h"

namespace qwen3moe {

namespace {
uint64_t splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
}  // namespace

float rng_uniform(uint64_t seed, uint64_t counter) {
    const uint64_t x = splitmix64(seed + (counter + 1) * 0x9E3779B97F4A7C15ull);
    return (float)(uint32_t)(x >> 40) * 5.9604644775390625e-8f;  // 2^-24
}

int32_t sample_greedy(const float* logits, int64_t n_vocab) {
    int64_t best = -1;
    for (int64_t i = 0; i < n_vocab; ++i) {
        if (logits[i] != logits[i]) continue;
        if (best < 0 || logits[i] > logits[best]) best = i;
    }
    return best < 0 ? 0 : (int32_t)best;
}

void validate_sampler_params(const SamplerParams& p) {
    if (p.top_k < 0) throw std::invalid_argument("top_k must be >= 0 (0 = no cut), got " + std::to_string(p.top_k));
    if (!(p.top_p > 0.0f && p.top_p <= 1.0f))
        throw std::invalid_argument("top_p must be in (0, 1], got " + std::to_string(p.top_p));
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f))
        throw std::invalid_argument("min_p must be in [0, 1], got " + std::to_string(p.min_p));
}

int32_t Sampler::sample(const float* logits, int64_t n_vocab, const SamplerParams& p, uint64_t counter) {
    validate_sampler_params(p);
    if (!(p.temperature > 0.0f)) return sample_greedy(logits, n_vocab);
    // 1. scaled logits and their max
    float mx = 0.0f;
    bool any = false;
    for (int64_t i = 0; i < n_vocab; ++i) {
        if (logits[i] != logits[i]) continue;
        const float s = canon_div(logits[i], p.temperature);
        if (!any || s > mx) mx = s;
        any = true;
    }
    if (!any) return 0;
    // exact shortcut: candidates whose e would be 0 can never be drawn
    cand_.clear();
    for (int64_t i = 0; i < n_vocab; ++i) {
        if (logits[i] != logits[i]) continue;
        const float s = canon_div(logits[i], p.temperature);
        if (canon_exp(s - mx) > 0.0f || s == mx) cand_.emplace_back(s, (int32_t)i);
    }
    // 2. sort by (scaled desc, id asc), top_k
    auto cmp = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    size_t n = cand_.size();
    if (p.top_k > 0 && (size_t)p.top_k < n) {
        std::partial_sort(cand_.begin(), cand_.begin() + p.top_k, cand_.end(), cmp);
        n = (size_t)p.top_k;
    } else {
        std::sort(cand_.begin(), cand_.end(), cmp);
    }
    // 3. e, Z (sequential, sorted order), p
    prob_.resize(n);
    float z = 0.0f;
    for (size_t j = 0; j < n; ++j) {
        prob_[j] = canon_exp(cand_[j].first - mx);
        z = z + prob_[j];
    }
    for (size_t j = 0; j < n; ++j) prob_[j] = canon_div(prob_[j], z);
    // 4. min_p
    if (p.min_p > 0.0f) {
        const float cut = p.min_p * prob_[0];
        size_t keep = 1;
        while (keep < n && !(prob_[keep] < cut)) ++keep;
        n = keep;
    }
    // 5. top_p
    if (p.top_p < 1.0f) {
        float c = 0.0f;
        size_t keep = n;
        for (size_t j = 0; j < n; ++j) {
            c = c + prob_[j];
            if (c >= p.top_p) {
                keep = j + 1;
                break;
            }
        }
        n = keep;
    }
    // 6. renormalise, 7. draw, 8. walk
    float z2 = 0.0f;
    for (size_t j = 0; j < n; ++j) z2 = z2 + prob_[j];
    const float target = rng_uniform(p.seed, counter) * z2;
    float c = 0.0f;
    int32_t last_pos = cand_[0].second;
    for (size_t j = 0; j < n; ++j) {
        c = c + prob_[j];
        if (prob_[j] > 0.0f) last_pos = cand_[j].second;
        if (target < c) return cand_[j].second;
    }
    return last_pos;
}

}  // namespace qwen3moe
