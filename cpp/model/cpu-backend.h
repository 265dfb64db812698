// CPU backend: host activation buffers, a thread pool over rows / tokens / heads, the KV cache,
// and prefill that groups tokens per expert so each expert's weights are read once per batch.
#pragma once
#include <memory>
#include <vector>

#include "model/backend.h"
#include "ops/rope.h"
#include "runtime/kv-cache.h"
#include "runtime/thread-pool.h"

namespace qwen3moe {

class CpuBackend : public Backend {
public:
    // rope: the host table for positions 0 .. n_ctx-1 (kept by reference; owned by the model).
    CpuBackend(const HParams& hp, ActMode mode, int n_ctx, int n_threads, const RopeTable& rope);
    const char* name() const override { return "cpu"; }

    void begin_batch(const int32_t* tokens, int T, int pos0) override;
    void embed(const Tensor& token_embd, Act out) override;
    void rms_norm(Act in, const NormWeight& w, Act out) override;
    void quantize(Act in) override;
    void matvec(const Tensor& w, Act in, Act out) override;
    void matvec_qkv(const Tensor& wq, const Tensor& wk, const Tensor& wv, Act in) override;
    void qk_norm_rope_kv_append(int il, const NormWeight& q_norm, const NormWeight& k_norm) override;
    void attention(int il) override;
    void add(Act a, Act b, Act out) override;
    void router_topk() override;
    void moe_experts(const Tensor& gate_exps, const Tensor& up_exps, const Tensor& down_exps, Act in) override;
    void lm_head(const Tensor& w, Act in, Rows rows) override;
    void copy_to_host(Act a, Rows rows, void* dst) override;
    size_t kv_bytes() const override { return kv_.bytes(); }
    size_t scratch_bytes() const override;

    int threads() const { return pool_.size(); }

private:
    float* buf(Act a) { return bufs_[(int)a].data(); }
    int32_t* indices() { return indices_.data(); }
    int64_t width(Act a) const { return width_[(int)a]; }
    void ensure_capacity(int T);
    void invalidate(Act a) { q8_valid_[(int)a] = false; }
    // fn(begin, end, thread) over [0, n): on the pool, or on this thread when `work` (about
    // multiply-adds) is below kSerialWork. Results never depend on the choice.
    template <class F>
    void par(int64_t n, int64_t work, F&& fn) {
        if (work < kSerialWork || pool_.size() == 1) {
            if (n > 0) fn(int64_t(0), n, 0);
            return;
        }
        pool_.parallel_for_indexed(n, fn);
    }
    // matvec of `w` over n_tok rows of (x, xq) into y (y_stride floats per token).
    void matvec_into(const WeightMatrix& w, int n_tok, const float* x, int64_t x_stride,
                     const block_q8k* xq, int64_t xq_stride, float* y, int64_t y_stride);

    HParams hp_;                 // model hyperparameters
    ActMode mode_;               // q8 or f32 activations
    int n_ctx_;                  // KV positions
    ThreadPool pool_;            // workers
    const RopeTable& rope_;      // cos/sin [n_ctx][hd/2]
    KVCache kv_;                 // [n_layer][n_ctx][kv_dim]
    float kq_scale_;             // 1/sqrt(hd), canonical

    // batch
    std::vector<int32_t> tokens_;  // [cap] current token ids
    int T_ = 0;                    // rows in the current batch
    int pos0_ = 0;                 // position of row 0
    int cap_ = 0;                  // rows allocated
    int64_t prefetch_ = 0;         // software prefetch bytes of this batch's matvecs (tuning knobs)

    int64_t width_[(int)Act::count] = {};      // floats (or int32) per row
    std::vector<float> bufs_[(int)Act::count]; // [cap][width] (unused for router_indices)
    std::vector<int32_t> indices_;             // [cap][k] router_indices
    std::vector<block_q8k> q8_[(int)Act::count];  // q8 copies of norm / attn_out: [cap][width/256]
    bool q8_valid_[(int)Act::count] = {};      // q8 copy matches the f32 buffer

    // per-thread scratch
    int64_t scratch_stride_ = 0;   // floats per thread for dequantised rows
    std::vector<float> scratch_;   // [threads][scratch_stride_]
    Q8kTiles tiles_;               // a batch's q8 activations laid out for the AMX tiles (matvec_qkv)
    std::vector<float> attn_scratch_;  // [threads][n_ctx + 2*hd]

    // expert grouping (prefill and decode): entries (t*k + r) sorted by expert
    std::vector<int32_t> grp_count_;   // [n_expert]
    std::vector<int32_t> grp_off_;     // [n_expert + 1]
    std::vector<int32_t> grp_active_;  // [<= n_expert] experts with tokens, ascending
    std::vector<int32_t> grp_entry_;   // [cap*k] gathered position -> t*k + r
    std::vector<int32_t> grp_pos_;     // [cap*k] t*k + r -> gathered position
    std::vector<float> g_in_;          // [cap*k][n_embd] gathered f32 input (f32 paths)
    std::vector<block_q8k> g_in_q8_;   // [cap*k][n_embd/256] gathered q8 input
    std::vector<float> g_gate_, g_up_, g_act_;  // [cap*k][n_ff_exp]
    std::vector<block_q8k> g_act_q8_;  // [cap*k][n_ff_exp/256]
    std::vector<float> g_down_;        // [cap*k][n_embd]
    bool grouped_valid_ = false;       // g_* hold this batch's last moe_experts (captures read them)
    // Decode (T = 1): qk_norm_rope_kv_append does the k heads and the KV append and leaves the
    // q heads' norm + RoPE to attention's region (each thread does the heads it attends with):
    // the q_norm weight of that pending step, or null. copy_to_host of q_normed / q_rope and
    // attention complete it; begin_batch drops it.
    const float* q_norm_pending_ = nullptr;
    void q_norm_rope_head(int64_t t, int h, const float* q_norm_w);  // q_normed, q_rope of (t, h)
};

}  // namespace qwen3moe
