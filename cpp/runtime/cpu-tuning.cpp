// CPU tuning knobs (see cpu-tuning.h). Defaults may be overridden at start-up by the environment
// variables QWEN3MOE_CPU_PREFETCH (bytes), QWEN3MOE_CPU_WEIGHTS_COPY (0/1) and
// QWEN3MOE_CPU_FEW_TOKENS (0/1), QWEN3MOE_CPU_CHUNKS and QWEN3MOE_CPU_CHUNKS_DECODE (chunks per
// thread of the dynamic pool partition, 0 = static), QWEN3MOE_CPU_ROW_PAIRS (MoE row weight),
// QWEN3MOE_CPU_PREFETCH_PREFILL (bytes; `prefetch` then applies to decode only),
// QWEN3MOE_CPU_TOKEN_CHUNK (bytes), QWEN3MOE_CPU_ROW_BATCH (0/1), QWEN3MOE_CPU_AMX_TOKENS (tokens).
#include "runtime/cpu-tuning.h"

#include <cstdlib>
#include <stdexcept>

namespace qwen3moe {

namespace {
constexpr int kDefaultPrefetch = 2048;  // 16 cores of the H200 host: tg 27.1 -> 31.0 tok/s (bench/NOTES.md)
constexpr int kMaxPrefetch = 1 << 16;
// Prefill (batches of 2+ tokens) is arithmetic-bound: on the 16-vCPU target the pp64 of the
// prefetch variants fell monotonically with the distance (0: 87.0, 1024: 85.1, 2048: 83.6, 4096: 83.1,
// 8192: 81.0 tok/s; bench/results/2026-11-22-h200-cpu3), while decode gained from 2048.
constexpr int kDefaultPrefetchPrefill = 0;
// Prefill: 16 chunks per thread. The static split showed a slowest/mean chunk time of 1.4-1.5 on
// the 16-vCPU target even for uniform matvecs; bench/moe_balance_sim.py with 2 of 16 threads at
// 0.66x speed (which reproduces that imbalance) gives wall / ideal 1.46 static, 1.18 / 1.09 / 1.02
// with 4 / 8 / 16 chunks per thread (bench/NOTES.md "CPU round 5"). Decode: 16 as well — tg32 on
// that machine (medians of 3, one call): static 29.7 +- 5.3, 4 chunks 32.5, 16 chunks 36.4 and
// 33.6 (two runs), 32 chunks 32.7 tok/s (bench/NOTES.md, session 3).
constexpr int kDefaultChunks = 16;
constexpr int kDefaultChunksDecode = 16;
constexpr int kMaxChunks = 64;
// MoE work units: a row's fixed cost counted as 16 (token, block) pairs (Zen 4 fits: 35 ns per
// 8-block row, 54 ns per 3-block row, 2.6-3.6 ns per pair); simulated 16-thread balance of a
// 64-token prefill: gate/up 0.93 -> 0.98, down 0.85 -> 0.98 (bench/NOTES.md "CPU round 5").
constexpr int kDefaultRowPairs = 16;
constexpr int kMaxRowPairs = 1024;
// Token chunks of 40 KiB of activation blocks (16 tokens of a 2048-wide row, 8 of a 4096-wide
// one): inside the 48 KiB L1D of the target's Xeon cores with the row being read.
constexpr int kDefaultTokenChunk = 40960;
constexpr int kMaxTokenChunk = 1 << 24;
// AMX tiles from 32 tokens on: one core (bench/dot_bench.cpp, H200 host's Xeon), ns per (block,
// token) tiles vs AVX-512 dots: Q4_K 2048-wide 8 tokens 10.75 vs 4.34, 16 tokens 5.47 vs 4.90,
// 64 tokens 3.40 vs 6.42; 4096-wide 16 tokens 5.01 vs 6.84, 64 tokens 2.78 vs 6.50. The weight
// bytes are made once per 16 rows and block, so the tiles pay off with two or more full token
// tiles (bench/NOTES.md, session 9).
constexpr int kDefaultAmxTokens = 32;
constexpr int kMaxAmxTokens = 1 << 20;

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
std::atomic<int> g_prefetch_prefill{env_int("QWEN3MOE_CPU_PREFETCH_PREFILL", kDefaultPrefetchPrefill, 0, kMaxPrefetch)};
std::atomic<int> g_weights_copy{env_int("QWEN3MOE_CPU_WEIGHTS_COPY", 0, 0, 1)};
std::atomic<int> g_few_tokens{env_int("QWEN3MOE_CPU_FEW_TOKENS", 1, 0, 1)};
std::atomic<int> g_chunks{env_int("QWEN3MOE_CPU_CHUNKS", kDefaultChunks, 0, kMaxChunks)};
std::atomic<int> g_chunks_decode{env_int("QWEN3MOE_CPU_CHUNKS_DECODE", kDefaultChunksDecode, 0, kMaxChunks)};
std::atomic<int> g_row_pairs{env_int("QWEN3MOE_CPU_ROW_PAIRS", kDefaultRowPairs, 0, kMaxRowPairs)};
std::atomic<int> g_row_batch{env_int("QWEN3MOE_CPU_ROW_BATCH", 1, 0, 1)};
std::atomic<int> g_token_chunk{env_int("QWEN3MOE_CPU_TOKEN_CHUNK", kDefaultTokenChunk, 0, kMaxTokenChunk)};
std::atomic<int> g_amx_tokens{env_int("QWEN3MOE_CPU_AMX_TOKENS", kDefaultAmxTokens, 0, kMaxAmxTokens)};
}  // namespace cpu_tuning

namespace {
// Every knob: its variable, its range [0, hi] (hi = 1: a switch) and the unit its error names.
struct Knob {
    const char* name;
    std::atomic<int>* value;
    int hi;
    const char* unit;  // appended to the range in errors ("" for none)
};
const Knob kKnobs[] = {
    {"prefetch", &cpu_tuning::g_prefetch, kMaxPrefetch, " bytes"},
    {"prefetch_prefill", &cpu_tuning::g_prefetch_prefill, kMaxPrefetch, " bytes"},
    {"weights_copy", &cpu_tuning::g_weights_copy, 1, ""},
    {"few_tokens", &cpu_tuning::g_few_tokens, 1, ""},
    {"chunks", &cpu_tuning::g_chunks, kMaxChunks, " chunks per thread"},
    {"chunks_decode", &cpu_tuning::g_chunks_decode, kMaxChunks, " chunks per thread"},
    {"row_pairs", &cpu_tuning::g_row_pairs, kMaxRowPairs, ""},
    {"token_chunk", &cpu_tuning::g_token_chunk, kMaxTokenChunk, " bytes"},
    {"row_batch", &cpu_tuning::g_row_batch, 1, ""},
    {"amx_tokens", &cpu_tuning::g_amx_tokens, kMaxAmxTokens, " tokens"},
};
}  // namespace

std::map<std::string, int> cpu_tuning_get() {
    std::map<std::string, int> m;
    for (const Knob& k : kKnobs) m[k.name] = k.value->load(std::memory_order_relaxed);
    return m;
}

void cpu_tuning_set(const std::string& name, int value) {
    std::string known;
    for (const Knob& k : kKnobs) {
        if (name == k.name) {
            if (value < 0 || value > k.hi)
                throw std::invalid_argument("cpu tuning '" + name + "' must be " +
                                            (k.hi == 1 ? std::string("0 or 1")
                                                       : "in 0.." + std::to_string(k.hi) + k.unit) +
                                            ", got " + std::to_string(value));
            k.value->store(value, std::memory_order_relaxed);
            return;
        }
        known += (known.empty() ? "" : ", ") + std::string(k.name);
    }
    throw std::invalid_argument("unknown cpu tuning knob '" + name + "' (known: " + known + ")");
}

std::map<std::string, std::vector<int>> cpu_tuning_choices() {
    return {{"prefetch", {0, 1024, 2048, 4096, 8192}},
            {"prefetch_prefill", {0, 2048}}, {"weights_copy", {0, 1}}, {"few_tokens", {0, 1}},
            {"chunks", {0, 4, 8, 16, 32}}, {"chunks_decode", {0, 4, 16}},
            {"row_pairs", {0, 8, 16, 32}}, {"token_chunk", {0, 20480, 40960, 81920}},
            {"row_batch", {0, 1}}, {"amx_tokens", {0, 4, 8, 16}}};
}

}  // namespace qwen3moe
