// decode-ops.h — host entry points of the fused single-token (decode) kernels, callable from
// plain C++. Each fused kernel computes exactly the values of the op-by-op kernels it replaces
// (same canonical device functions, same order), writing the same activation buffers, so a
// decode step through these kernels is bit-identical to the op-by-op forward (and the CPU).
//
// `pdl`: launch with programmatic dependent launch (sm_90; see decode-common.cuh). Every
// pointer is a device pointer; `stream` is a cudaStream_t as void*. Launchers validate shapes
// (std::invalid_argument) and never synchronise.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cuda/cuda-ops.h"
#include "model/backend.h"

namespace qwen3moe::cuda {

// Longest row of a decode matvec, in 256-value blocks (a row is one segment of <= 32 lanes).
constexpr int64_t kDecMaxBlocks = 32;

// Phase trace (bench/dec_trace.py; QWEN3MOE_CUDA_DEC_TRACE=1 at the step's capture): a kernel
// given `trace` has thread 0 of each block b < kDecTraceBlocks write, at its phase marks m,
// trace[(b * kDecTraceMarks + m) * 2 + {0, 1}] = {%globaltimer ns, clock64 of its SM}. The
// values are the same with or without it.
constexpr int kDecTraceBlocks = kDecodeTraceBlocks;  // model/backend.h
constexpr int kDecTraceMarks = kDecodeTraceMarks;
constexpr int64_t kDecTraceSlot = (int64_t)kDecTraceBlocks * kDecTraceMarks * 2;  // words per kernel
// Slots of the step's kernels: norm + q/k/v, attention (cluster), o-proj, router, gate/up, down.
constexpr int kDecTraceKernels = 6;

// One weight matrix of a fused decode matvec: out[r] = row r . activations (the matvec rule).
struct DecMatrix {
    const void* w = nullptr;  // device rows of `type`
    uint32_t type = 0;        // GGML type id (a Q8K-dot type, or F32/F16/BF16 for the router)
    int64_t n_rows = 0;       // rows
    float* out = nullptr;     // device [n_rows]
};

// Whether decode kernels can run matrices of this type with Q8K activations.
bool dec_q8k_type(uint32_t type);

// out_m = W_m q8(RMSNorm(x) * norm_w) for m < n_mat, every row of the n_mat matrices in one
// grid (the attention block's q, k, v). Each thread block computes the norm and its Q8K
// blocks itself (rms_norm_q8k's bits); block 0 also stores them to norm_out / norm_q8 when set.
struct DecNormMatvecArgs {
    const float* x = nullptr;       // [n] input row
    const float* norm_w = nullptr;  // [n] norm weight
    float eps = 0.0f;               // RMSNorm epsilon
    int64_t n = 0;                  // values per row (multiple of 256)
    const block_q8k* in_q8 = nullptr;  // optional [n/256]: the norm's Q8K blocks, already made
                                       // (then x, norm_w, norm_out, norm_q8 are not used)
    DecMatrix mat[3];               // matrices (Q8K-dot types), rows of n values
    int n_mat = 0;                  // 1..3
    float* norm_out = nullptr;      // optional [n]: the normed row
    block_q8k* norm_q8 = nullptr;   // optional [n/256]: its Q8K blocks
    unsigned long long* trace = nullptr;  // optional phase trace (kDecTraceSlot words)
};
void dec_norm_matvec(const DecNormMatvecArgs& args, void* stream, bool pdl);

// out = W q8(in); sum[r] = residual[r] + out[r] (attn_output projection + residual add).
struct DecMatvecAddArgs {
    const float* in = nullptr;        // [n] activations (quantised in each thread block unless in_q8)
    const block_q8k* in_q8 = nullptr; // optional [n/256]: their Q8K blocks, already made
    int64_t n = 0;                    // values per row (multiple of 256)
    DecMatrix mat;                    // Q8K-dot type
    const float* residual = nullptr;  // [mat.n_rows]
    float* sum = nullptr;             // [mat.n_rows]
    unsigned long long* trace = nullptr;  // optional phase trace (kDecTraceSlot words)
};
void dec_matvec_add(const DecMatvecAddArgs& args, void* stream, bool pdl);

// Decode attention of one token at position pos[0] over cache positions 0..pos, with the head
// norms and RoPE folded in: q_normed / q_rope and k_normed / k_rope (norm_rope's values), K (roped)
// and V appended to the cache at pos (kv_store's values), then split-K over key tiles with a
// grid fixed at capture. With `cluster` > 0 (sm_90): one launch, a thread-block cluster per KV
// head whose barriers separate the scores, the tile sums and the ascending-tile combine.
// Otherwise two launches (n_split blocks per KV head loop over the work the position needs):
// scores + run maxima; then tile sums and, in the last block of each KV head (atomic counter),
// the combine. Same values as norm_rope + kv_store + `attention` either way.
struct DecAttnArgs {
    const float* q = nullptr;         // [n_head * hd] q before the head norm
    const float* k = nullptr;         // [n_head_kv * hd] k before the head norm
    const float* v = nullptr;         // [n_head_kv * hd]
    const float* q_norm = nullptr;    // [hd] attn_q_norm weight
    const float* k_norm = nullptr;    // [hd] attn_k_norm weight
    float eps = 0.0f;                 // RMSNorm epsilon
    const float* rope_cos = nullptr;  // [n_ctx][hd / 2]
    const float* rope_sin = nullptr;  // [n_ctx][hd / 2]
    float* q_normed = nullptr;        // [n_head * hd] (written)
    float* q_rope = nullptr;          // [n_head * hd] (written)
    float* k_normed = nullptr;        // [n_head_kv * hd] (written)
    float* k_rope = nullptr;          // [n_head_kv * hd] (written)
    void* k_cache = nullptr;          // [n_ctx][n_head_kv * hd]
    void* v_cache = nullptr;          // [n_ctx][n_head_kv * hd]
    bool cache_f16 = true;            // f16 or f32 elements
    int64_t n_ctx = 0;                // cache rows
    const int32_t* pos = nullptr;     // [1] the token's position (0 <= pos < n_ctx)
    int n_head = 0, n_head_kv = 0, hd = 0;
    float* out = nullptr;             // [n_head * hd]
    block_q8k* out_q8 = nullptr;      // optional [n_head * hd / 256]: Q8K blocks of out (needs
                                      // (n_head / n_head_kv) * hd % 256 == 0)
    float* scratch = nullptr;         // dec_attention_scratch_floats(...) floats
    unsigned* counters = nullptr;     // [n_head_kv], zero before the first launch (left zero)
    int n_split = 1;                  // blocks per KV head (the two-launch path)
    int cluster = 0;                  // > 0: one launch, a cluster of this many blocks per KV head
                                      // (sm_90; from dec_attention_cluster_size); 0: two launches
    unsigned long long* trace = nullptr;  // optional phase trace (kDecTraceSlot words)
};
size_t dec_attention_scratch_floats(int n_head, int hd, int64_t n_ctx);
void dec_attention(const DecAttnArgs& args, void* stream, bool pdl);
// Most blocks per KV head for the two-launch attention that still run in one wave on the
// current device (resident blocks per SM of both kernels x SMs / n_head_kv, at least 1). A grid
// one block past a wave runs a second wave: at n_ctx 4736 on an H200 the old choice of
// min(tiles, 2 x SMs / n_head_kv) = 37 blocks made decode after 4096 tokens 17 % slower than 33.
int dec_attention_max_split(int n_head_kv, bool cache_f16);
// Blocks per cluster for the one-launch attention on the current device (a power of two <= 16
// with n_head_kv clusters resident at once), or 0 when it cannot run there (no clusters).
int dec_attention_cluster_size(int hd, int n_head_kv, bool cache_f16);

// Router of one token: y = RMSNorm(x) * norm_w (block 0 stores y and its Q8K blocks for the
// experts), logits = W_router y (the matvec rule for the router's type), then in the last block
// (atomic counter) softmax + top-k + renormalised weights, as router_topk.
struct DecRouterArgs {
    const float* x = nullptr;        // [n] ffn_inp
    const float* norm_w = nullptr;   // [n] ffn_norm weight
    float eps = 0.0f;
    int64_t n = 0;                   // multiple of 256
    const void* w = nullptr;         // router [n_expert][n] of `type`
    uint32_t type = 0;               // F32/F16/BF16 (f32 activations) or a Q8K-dot type
    int n_expert = 0, k = 0;
    float* norm_out = nullptr;       // [n]
    block_q8k* norm_q8 = nullptr;    // [n/256]
    float* logits = nullptr;         // [n_expert]
    float* probs = nullptr;          // [n_expert]
    int32_t* ids = nullptr;          // [k]
    float* weights = nullptr;        // [k]
    unsigned* counter = nullptr;     // zero before the first launch (left zero)
    unsigned long long* trace = nullptr;  // optional phase trace (kDecTraceSlot words)
};
void dec_router(const DecRouterArgs& args, void* stream, bool pdl);

// Experts of one token, gate and up with SwiGLU: for slot r < k (expert ids[r]) and row i:
// gate[r][i], up[r][i] (the matvec rule on the ffn_norm Q8K blocks a), swiglu = silu(g) * u.
struct DecGateUpArgs {
    const block_q8k* a = nullptr;    // [n/256]
    int64_t n = 0;                   // values per row
    const int32_t* ids = nullptr;    // [k]
    int k = 0;
    const void* gate = nullptr;      // [n_mat][n_ff][n]
    uint32_t gate_type = 0;
    const void* up = nullptr;        // [n_mat][n_ff][n]
    uint32_t up_type = 0;
    int64_t n_ff = 0, n_mat = 0;
    float* gate_out = nullptr;       // [k][n_ff]
    float* up_out = nullptr;         // [k][n_ff]
    float* swiglu_out = nullptr;     // [k][n_ff]
    block_q8k* swiglu_q8 = nullptr;  // [k][n_ff/256]: Q8K blocks of swiglu_out (quantize_q8k's bits),
                                     // written by the last block finishing each 256-row chunk
    unsigned* counters = nullptr;    // [k][n_ff/256], zero before the first launch (left zero)
    unsigned long long* trace = nullptr;  // optional phase trace (kDecTraceSlot words)
};
void dec_gate_up(const DecGateUpArgs& args, void* stream, bool pdl);

// Down projection of the k slots (their Q8K SwiGLU rows from dec_gate_up), the expert combine
// in rank order and the residual: out[r][d], moe[d] = fma chain of weights[r] * out[r][d],
// x_out[d] = residual[d] + moe[d].
struct DecDownArgs {
    const block_q8k* hidden_q8 = nullptr;  // [k][n_ff/256] Q8K SwiGLU rows
    int64_t n_ff = 0;                // multiple of 256
    const int32_t* ids = nullptr;    // [k]
    const float* weights = nullptr;  // [k]
    int k = 0;
    const void* down = nullptr;      // [n_mat][n_out][n_ff]
    uint32_t type = 0;
    int64_t n_out = 0, n_mat = 0;
    float* expert_out = nullptr;     // [k][n_out]
    float* moe_out = nullptr;        // [n_out]
    const float* residual = nullptr; // [n_out] ffn_inp
    float* x_out = nullptr;          // [n_out] layer output
    // Optional: the next RMSNorm of x_out (the next layer's attn_norm, or output_norm), computed
    // by the last block to finish (atomic counter) as rms_norm_q8k.
    const float* next_norm_w = nullptr;  // [n_out]
    float next_eps = 0.0f;
    float* next_norm_out = nullptr;      // [n_out]
    block_q8k* next_norm_q8 = nullptr;   // [n_out/256]
    unsigned* counter = nullptr;         // zero before the first launch (left zero)
    unsigned long long* trace = nullptr;  // optional phase trace (kDecTraceSlot words)
};
void dec_down(const DecDownArgs& args, void* stream, bool pdl);

// Whether the device supports programmatic dependent launch (compute capability >= 9.0).
bool dec_device_has_pdl(int device);

}  // namespace qwen3moe::cuda
