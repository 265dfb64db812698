// Backend interface: the stage-level operations the qwen3moe forward is written against.
//
// The forward (model/qwen3moe.cpp) is one loop over layers calling these ops on opaque
// activation buffers named by `Act`; a backend owns the buffers (host memory on the CPU,
// device memory on CUDA), the KV cache and any q8 copies of activations. Weights are passed
// as `Tensor`s (host descriptions with a stable `id`, so a device backend can keep its own
// copy per id). Every op follows the numerics contract of ARCHITECTURE.md section 2 exactly,
// so two backends that implement this interface give bit-identical results.
//
// Batch: begin_batch() sets the current tokens (T rows) and their first position; every op
// works on all T rows unless it takes `Rows`.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/qwen3moe-types.h"

namespace qwen3moe {

struct Weights;  // model/qwen3moe.h

// Shape of the fused decode step's phase trace (Backend::decode_trace): per kernel, blocks x
// phase marks x {globaltimer ns, SM clock}.
constexpr int kDecodeTraceBlocks = 512;
constexpr int kDecodeTraceMarks = 8;

// Activation buffers, each [T][width] (width from the hparams).
enum class Act : int {
    x,            // [n_embd] residual stream (embed, then layer_out)
    norm,         // [n_embd] attn_norm / ffn_norm / final_norm output (has a q8 copy)
    q,            // [n_head*hd]
    k,            // [n_head_kv*hd]
    v,            // [n_head_kv*hd]
    q_normed,     // [n_head*hd]
    k_normed,     // [n_head_kv*hd]
    q_rope,       // [n_head*hd]
    k_rope,       // [n_head_kv*hd]
    attn_out,     // [n_head*hd] (has a q8 copy)
    attn_proj,    // [n_embd]
    ffn_inp,      // [n_embd]
    router_logits,   // [n_expert]
    router_probs,    // [n_expert]
    router_indices,  // [k] int32
    router_weights,  // [k]
    expert_gate,     // [k][n_ff_exp]  (rank order)
    expert_up,       // [k][n_ff_exp]
    expert_swiglu,   // [k][n_ff_exp]
    expert_out,      // [k][n_embd]
    moe_out,         // [n_embd]
    logits,          // [n_vocab], rows as given to lm_head
    count,
};

struct Rows {
    int r0 = 0;  // first row
    int n = 0;   // rows
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual const char* name() const = 0;  // "cpu", "cuda"

    // Tokens (host, already validated) of the next batch; positions pos0 .. pos0 + T - 1.
    // Grows buffers when T exceeds every earlier batch (no allocation otherwise).
    virtual void begin_batch(const int32_t* tokens, int T, int pos0) = 0;

    // x[t] = dequantised row tokens[t] of token_embd.
    virtual void embed(const Tensor& token_embd, Act out) = 0;
    // out = RMSNorm(in) * w over each row (w: host f32 vector of the norm weight).
    virtual void rms_norm(Act in, const NormWeight& w, Act out) = 0;
    // Make the q8 copy of `in` (once per input vector; every later matvec of a quantised
    // weight on `in` reads it). No-op in activations="f32" mode.
    virtual void quantize(Act in) = 0;
    // out[t] = W in[t] by the matvec rule.
    virtual void matvec(const Tensor& w, Act in, Act out) = 0;
    // q, k, v = Wq in, Wk in, Wv in (same results as three matvec calls; a backend may run the
    // rows of all three matrices as one piece of parallel work).
    virtual void matvec_qkv(const Tensor& wq, const Tensor& wk, const Tensor& wv, Act in) {
        matvec(wq, in, Act::q);
        matvec(wk, in, Act::k);
        matvec(wv, in, Act::v);
    }
    // Per token: q_normed = RMSNorm per head (q_norm), k_normed likewise (k_norm), q_rope and
    // k_rope = RoPE NEOX at the token's position; then K (k_rope) and V stored in layer il of the
    // KV cache at that position.
    virtual void qk_norm_rope_kv_append(int il, const NormWeight& q_norm, const NormWeight& k_norm) = 0;
    // attn_out[t] = causal attention of q_rope[t] over cache positions 0 .. pos0 + t of layer il.
    virtual void attention(int il) = 0;
    // out = a + b.
    virtual void add(Act a, Act b, Act out) = 0;
    // router_probs = softmax(router_logits); router_indices / router_weights = top-k.
    virtual void router_topk() = 0;
    // Experts of every token in rank order from the q8/f32 `in` (ffn_norm output):
    // expert_gate, expert_up, expert_swiglu, expert_out and moe_out.
    virtual void moe_experts(const Tensor& gate_exps, const Tensor& up_exps, const Tensor& down_exps, Act in) = 0;
    // logits rows 0 .. rows.n-1 = W in[rows.r0 ..] by the matvec rule (the LM head).
    virtual void lm_head(const Tensor& w, Act in, Rows rows) = 0;
    // Copy rows of a buffer to host memory (capture copy, logits).
    virtual void copy_to_host(Act a, Rows rows, void* dst) = 0;

    // A whole single-token decode step without captures (the token at position pos, after
    // begin_batch-equivalent state changes): the forward of the ops above for T = 1 and the
    // LM head when `logits` (host [n_vocab]) is given, with exactly the same results, in
    // whatever fused form the backend has. Returns false (and does nothing) when the backend
    // has no such path for this model; the caller then runs the op-by-op forward.
    virtual bool decode_step(const Weights& w, int32_t token, int pos, float* logits) {
        (void)w;
        (void)token;
        (void)pos;
        (void)logits;
        return false;
    }
    // Device-side timing of the backend's queued work (benchmarks): timer_start() marks the
    // point after everything queued so far; timer_stop() marks the point after everything
    // queued since, waits for it and returns the milliseconds between the two marks (CUDA
    // events on the backend's stream). Backends without a device clock return a negative value.
    virtual void timer_start() {}
    virtual double timer_stop() { return -1.0; }
    // How decode steps run (reports): "op-by-op", or the fused path's name, or why not.
    virtual std::string decode_path() const { return "op-by-op"; }
    // The fused decode step's phase trace (CUDA with QWEN3MOE_CUDA_DEC_TRACE=1; bench/dec_trace.py):
    // [kernel][block][mark][globaltimer ns, SM clock] of the last traced step, or empty.
    virtual std::vector<uint64_t> decode_trace() { return {}; }

    // Memory held by the backend (for reports): KV cache, activation buffers and scratch.
    virtual size_t kv_bytes() const = 0;
    virtual size_t scratch_bytes() const = 0;
};

}  // namespace qwen3moe
