// CPU tuning knobs (see cpu-tuning.h). Defaults may be overridden at start-up by the environment
// variable QWEN3MOE_CPU_PREFETCH (bytes).
#include "runtime/cpu-tuning.h"

#include <cstdlib>
#include <stdexcept>

namespace qwen3moe {

namespace {
constexpr int kDefaultPrefetch = 2048;
constexpr int kMaxPrefetch = 1 << 16;

int env_int(const char* name, int def, int lo, int hi) {
    const char* s = std::getenv(name);
    if (!s || !*s) return def;
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (*end || v < lo || v > hi) return def;
    return (int)v;
}
}  // namespace

namespace cpu_tuning {
std::atomic<int> g_prefetch{env_int("QWEN3MOE_CPU_PREFETCH", kDefaultPrefetch, 0, kMaxPrefetch)};
}  // namespace cpu_tuning

std::map<std::string, int> cpu_tuning_get() { return {{"prefetch", cpu_tuning::prefetch_bytes()}}; }

void cpu_tuning_set(const std::string& name, int value) {
    if (name == "prefetch") {
        if (value < 0 || value > kMaxPrefetch)
            throw std::invalid_argument("cpu tuning 'prefetch' must be in 0.." + std::to_string(kMaxPrefetch) +
                                        " bytes, got " + std::to_string(value));
        cpu_tuning::g_prefetch.store(value, std::memory_order_relaxed);
        return;
    }
    throw std::invalid_argument("unknown cpu tuning knob '" + name + "' (known: prefetch)");
}

std::map<std::string, std::vector<int>> cpu_tuning_choices() { return {{"prefetch", {0, 1024, 2048, 4096, 8192}}}; }

}  // namespace qwen3moe
