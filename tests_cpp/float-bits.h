// float-bits.h — the bit pattern of a float, for the Catch2 suites' bit-for-bit comparisons.
#pragma once
#include <cstdint>
#include <cstring>

namespace qwen3moe::test {
inline uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}
}  // namespace qwen3moe::test
