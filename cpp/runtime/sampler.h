// Canonical sampling on host logits, shared by every backend (same seed -> same tokens).
//
// Definition (exact):
//  * temperature <= 0 (or NaN): greedy = argmax over ids, ties -> lowest id (NaN logits skipped;
//    all NaN -> id 0).
//  * otherwise, over the ids whose logit is not NaN:
//    1. scaled_i = canon_div(l_i, temperature); mx = max scaled.
//    2. candidates sorted by (scaled desc, id asc); if top_k > 0 keep the first top_k.
//    3. e_j = canon_exp(scaled_j - mx) in sorted order; Z = sequential sum of e_j (from +0.0f,
//       sorted order); p_j = canon_div(e_j, Z).
//    4. min_p > 0: drop every j with p_j < min_p * p_0 (p_0 the largest p; a prefix remains).
//    5. top_p < 1: keep the smallest prefix whose sequential cumulative sum of p_j reaches
//       top_p (c_j >= top_p); at least one candidate.
//    6. renormalise: Z2 = sequential sum of the kept p_j.
//    7. u = rng_uniform(seed, counter) in [0, 1): 24 bits of splitmix64(seed + (counter + 1) *
//       0x9E3779B97F4A7C15) (the top 24 bits of the mixed value) times 2^-24.
//    8. target = u * Z2; walk kept candidates with c = c + p_j (from +0.0f) and return the
//       first id with target < c; if none (rounding), the last kept candidate with p_j > 0.
//  Candidates with canon_exp(scaled - mx) == 0 have p = 0 and can never be returned, so they
//  are dropped before sorting (an exact shortcut).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace qwen3moe {

struct SamplerParams {
    float temperature = 0.0f;  // <= 0: greedy
    int top_k = 0;             // 0: no cut
    float top_p = 1.0f;        // 1: no cut
    float min_p = 0.0f;        // 0: no cut
    uint64_t seed = 0;         // RNG stream
};

// Uniform in [0, 1) with 24 random bits, a pure function of (seed, counter).
float rng_uniform(uint64_t seed, uint64_t counter);

// argmax, ties -> lowest id.
int32_t sample_greedy(const float* logits, int64_t n_vocab);

class Sampler {
public:
    // Sample from logits[n_vocab] with draw number `counter`. Throws std::invalid_argument
    // for bad parameters (top_p outside (0, 1], min_p outside [0, 1], top_k < 0).
    int32_t sample(const float* logits, int64_t n_vocab, const SamplerParams& p, uint64_t counter);

private:
    std::vector<std::pair<float, int32_t>> cand_;  // (scaled logit, id), reused across calls
    std::vector<float> prob_;                      // p_j in sorted order
};

void validate_sampler_params(const SamplerParams& p);

}  // namespace qwen3moe
