// Op profiler: wall time, weight bytes and thread-pool statistics per op kind, accumulated
// over a forward (summed over layers). Off by default; when off every hook is one relaxed
// atomic load and a branch (no clock read, no allocation). Used by bench/cpu_profile.py through
// _core.profile_enable / profile_reset / profile_read.
//
// The forward (model/qwen3moe.cpp) opens one OpScope per backend call, labelled by its role
// (attention norm, q/k/v, ...); the CPU backend opens child scopes inside moe_experts (gate/up,
// SwiGLU, down, ...). A child's time is also inside its parent's. The thread pool reports each
// parallel region (wall time, per-thread busy time, wake-up latency) to the innermost open scope.
// Only the thread that runs the forward opens scopes (one forward at a time is profiled).
// On an asynchronous device backend the times are host (launch) times, not device times.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace qwen3moe {

enum class ProfOp : int {
    embed,
    attn_norm,
    attn_quantize,   // q8 copy of the attention norm output
    qkv,             // q, k, v projections
    qk_norm_rope,    // per-head q/k RMSNorm, RoPE, KV append
    attention,
    o_quantize,      // q8 copy of the attention output
    o_proj,
    residual_add,    // both residual adds
    ffn_norm,
    ffn_quantize,
    router,          // router matvec (ffn_gate_inp)
    router_topk,     // softmax + top-k
    experts,         // the whole MoE expert block (parent of the experts_* children)
    experts_group,   // grouping entries by expert, gathering inputs
    experts_gate_up,
    experts_swiglu,  // SwiGLU + q8 copy of its output
    experts_down,
    experts_combine, // scatter to rank order, weighted sum
    final_norm,
    lm_quantize,
    lm_head,
    count,
};

const char* prof_op_name(ProfOp op);
// The parent of a child op (experts_* -> experts), or ProfOp::count for a top-level op.
ProfOp prof_op_parent(ProfOp op);

// Per op kind, accumulated since the last reset.
struct ProfStats {
    int64_t calls = 0;           // scopes closed
    int64_t ns = 0;              // wall time inside the scopes (ns)
    int64_t bytes = 0;           // weight bytes the op read (as declared by the scope)
    int64_t regions = 0;         // thread-pool parallel regions run inside the scopes
    int64_t region_ns = 0;       // wall time of those regions (publish .. last thread done)
    int64_t busy_ns = 0;         // sum over regions and threads of per-thread chunk time
    int64_t busy_max_ns = 0;     // sum over regions of the slowest thread's chunk time
    int64_t wake_ns = 0;         // sum over regions of the latest worker start after publish
    int64_t region_threads = 0;  // sum over regions of the thread count
};

namespace op_profile {

extern std::atomic<bool> g_enabled;
inline bool enabled() { return g_enabled.load(std::memory_order_relaxed); }
void set_enabled(bool on);
void reset();
std::vector<ProfStats> read();  // [ProfOp::count]
int64_t now_ns();               // steady clock

// Called by the thread pool (caller thread) after a region when enabled().
void add_region(int64_t wall_ns, int64_t busy_sum_ns, int64_t busy_max_ns, int64_t wake_max_ns, int threads);

// Scope timer: no-op unless profiling was enabled when it was opened.
class OpScope {
public:
    explicit OpScope(ProfOp op, int64_t bytes = 0) {
        if (enabled()) open(op, bytes);
    }
    ~OpScope() {
        if (active_) close();
    }
    OpScope(const OpScope&) = delete;
    OpScope& operator=(const OpScope&) = delete;
    // Weight bytes learnt after the scope opened (e.g. the experts a batch routes to).
    void add_bytes(int64_t b) { bytes_ += b; }

private:
    void open(ProfOp op, int64_t bytes);
    void close();
    bool active_ = false;
    ProfOp op_ = ProfOp::count;
    int prev_ = -1;      // enclosing open op (-1: none)
    int64_t t0_ = 0;
    int64_t bytes_ = 0;
};

}  // namespace op_profile
}  // namespace qwen3moe
