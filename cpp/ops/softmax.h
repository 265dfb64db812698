// Canonical softmax (router probabilities; shared by every backend).
#pragma once
#include <cstdint>

namespace qwen3moe {

// m = max_i l[i]; e[i] = canon_exp(l[i] - m); Z = canon_sum_ref(e, n) (32-lane rule);
// p[i] = canon_div(e[i], Z).  p may alias l.
void softmax_canon(const float* l, float* p, int64_t n);

}  // namespace qwen3moe
