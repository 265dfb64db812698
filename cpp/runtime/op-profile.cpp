// Op profiler accumulators (see op-profile.h). Scopes are opened and closed by the forward's
// thread only; regions are reported by the same thread (the pool's caller), so the counters need
// no locking; reset/read from another thread are meant for the moments between forwards.
#include "runtime/op-profile.h"

#include <chrono>

namespace qwen3moe {

namespace {
const char* const kNames[(int)ProfOp::count] = {
    "embed",        "attn_norm",    "attn_quantize",   "qkv",         "qk_norm_rope", "attention",
    "o_quantize",   "o_proj",       "residual_add",    "ffn_norm",    "ffn_quantize", "router",
    "router_topk",  "experts",      "experts.group",   "experts.gate_up", "experts.swiglu",
    "experts.down", "experts.combine", "final_norm",   "lm_quantize", "lm_head",
};
ProfStats g_stats[(int)ProfOp::count];
std::atomic<int> g_current{-1};  // innermost open scope
}  // namespace

namespace op_profile {

std::atomic<bool> g_enabled{false};

void set_enabled(bool on) { g_enabled.store(on, std::memory_order_relaxed); }

void reset() {
    for (ProfStats& s : g_stats) s = ProfStats{};
}

std::vector<ProfStats> read() { return std::vector<ProfStats>(g_stats, g_stats + (int)ProfOp::count); }

int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void add_region(int64_t wall_ns, int64_t busy_sum_ns, int64_t busy_max_ns, int64_t wake_max_ns, int threads) {
    const int cur = g_current.load(std::memory_order_relaxed);
    if (cur < 0) return;
    ProfStats& s = g_stats[cur];
    s.regions += 1;
    s.region_ns += wall_ns;
    s.busy_ns += busy_sum_ns;
    s.busy_max_ns += busy_max_ns;
    s.wake_ns += wake_max_ns;
    s.region_threads += threads;
}

void OpScope::open(ProfOp op, int64_t bytes) {
    active_ = true;
    op_ = op;
    bytes_ = bytes;
    prev_ = g_current.exchange((int)op, std::memory_order_relaxed);
    t0_ = now_ns();
}

void OpScope::close() {
    const int64_t dt = now_ns() - t0_;
    ProfStats& s = g_stats[(int)op_];
    s.calls += 1;
    s.ns += dt;
    s.bytes += bytes_;
    g_current.store(prev_, std::memory_order_relaxed);
}

}  // namespace op_profile

const char* prof_op_name(ProfOp op) {
    const int i = (int)op;
    return i >= 0 && i < (int)ProfOp::count ? kNames[i] : "?";
}

ProfOp prof_op_parent(ProfOp op) {
    switch (op) {
        case ProfOp::experts_group:
        case ProfOp::experts_gate_up:
        case ProfOp::experts_swiglu:
        case ProfOp::experts_down:
        case ProfOp::experts_combine:
            return ProfOp::experts;
        default:
            return ProfOp::count;
    }
}

}  // namespace qwen3moe
