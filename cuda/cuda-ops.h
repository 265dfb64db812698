// cuda-ops.h — host entry points of the CUDA kernels, callable from plain C++ (no CUDA
// headers needed). Every pointer named "device" lives in GPU memory; `stream` is a
// cudaStream_t passed as void* (nullptr = the legacy default stream). Launchers validate
// their arguments (std::invalid_argument / UnsupportedType) and report CUDA failures as
// exceptions (common.cuh); they never synchronise unless stated.
//
// Each op computes exactly the canonical definition of its CPU twin (ARCHITECTURE.md
// section 2, ops/canon.h, quant/dot-canon.h): the results are bit-identical to the CPU.
#pragma once
#include <cstddef>
#include <cstdint>

#include "quant/blocks.h"

namespace qwen3moe::cuda {

// ---- device memory, streams (device-memory.cu) ------------------------------------------

// cudaMalloc; throws OutOfMemory naming the request and the free/total device memory.
void* device_alloc(size_t bytes);
// Test hook (fault injection): the n-th device_alloc from now (n >= 1) fails as if the device
// were out of memory (OutOfMemory); n <= 0 disarms. Returns allocations made since the last call.
long long inject_alloc_failure(long long n);
void device_free(void* p) noexcept;  // nullptr is a no-op; errors are ignored
void memcpy_h2d(void* dst_device, const void* src_host, size_t bytes, void* stream);
void memcpy_d2h(void* dst_host, const void* src_device, size_t bytes, void* stream);
void memcpy_d2d(void* dst_device, const void* src_device, size_t bytes, void* stream);
void memset_device(void* dst_device, int value, size_t bytes, void* stream);
void* stream_create();
void stream_destroy(void* stream) noexcept;
void stream_sync(void* stream);  // also surfaces asynchronous kernel faults
void device_synchronize();
void set_device(int dev);
void mem_info(size_t* free_bytes, size_t* total_bytes);
// CUDA events (timing in benchmarks): elapsed_ms waits for `stop`.
void* event_create();
void event_destroy(void* event) noexcept;
void event_record(void* event, void* stream);
float event_elapsed_ms(void* start, void* stop);

// Owning device buffer (move-only).
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t bytes) : p_(bytes ? device_alloc(bytes) : nullptr), n_(bytes) {}
    ~DeviceBuffer() { device_free(p_); }
    DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        if (this != &o) {
            device_free(p_);
            p_ = o.p_;
            n_ = o.n_;
            o.p_ = nullptr;
            o.n_ = 0;
        }
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    void* get() const { return p_; }
    template <class T> T* as() const { return static_cast<T*>(p_); }
    size_t size() const { return n_; }

private:
    void* p_ = nullptr;  // device pointer (nullptr when empty)
    size_t n_ = 0;       // bytes
};

// ---- ops ----------------------------------------------------------------------------------

// quantize-q8k.cu: x [n_rows, n] f32 -> y [n_rows, n/256] Q8K blocks (n % 256 == 0).
void quantize_q8k(const float* x, block_q8k* y, int64_t n_rows, int64_t n, void* stream);

// Which weight rows a matvec multiplies with which activation rows. "Slots" s = t*n_used + r
// (token t < n_tok, r < n_used): slot s uses matrix ids[s] of w (matrix 0 when ids is null),
// activation row t (or s when act_per_slot), and writes out[s * n_rows + row].
struct MatvecArgs {
    uint32_t type = 0;            // GGML type id of w
    const void* w = nullptr;      // device: n_mat matrices, each n_rows rows of n values of `type`
    int64_t n_rows = 0;           // output rows per matrix
    int64_t n = 0;                // values per row (the dot length)
    int64_t n_mat = 1;            // matrices in w; a slot whose id is outside [0, n_mat) gets NaN rows
    const int32_t* ids = nullptr; // device [n_tok * n_used] matrix index per slot, or nullptr
    int n_tok = 1;                // tokens
    int n_used = 1;               // slots per token
    bool act_per_slot = false;    // activation row per slot instead of per token
    float* out = nullptr;         // device [n_tok * n_used, n_rows]
    // Optional grouping of the slots by ids (moe_group over the same ids, n_tok * n_used slots
    // and n_mat): multi-token launches then read each expert matrix once per tile of its slots.
    const int32_t* groups = nullptr;  // device, moe_group_ints(...) int32, or nullptr
};

// moe-group.cu: sorts the slots s < n_slots by ids[s] on the device (invalid ids in a bucket of
// their own) and writes the work list of the tiled expert matvecs into groups (device,
// moe_group_ints(n_slots, n_mat) int32). 1 <= n_mat <= kMoeGroupMaxMat.
constexpr int64_t kMoeGroupMaxMat = 4096;
size_t moe_group_ints(int64_t n_slots, int64_t n_mat);
void moe_group(const int32_t* ids, int64_t n_slots, int64_t n_mat, int32_t* groups, void* stream);

// matvec-q8k.cu: out = canonical dot of quantised weight rows (Q4_0 Q8_0 Q4_K Q5_K Q6_K) with
// Q8K activations a (device, [n_act_rows, n/256] blocks). n % 256 == 0.
void matvec_q8k(const MatvecArgs& args, const block_q8k* a, void* stream);
// matvec-mma.cu: the int8 tensor-core prefill kernel matvec_q8k uses: kMmaWide (the wide-tile
// kernel of matvec-mma-wide.cu, the default) or kMmaOld (the 16-slot kernel of matvec-mma.cu).
// The default is read once from QWEN3MOE_CUDA_MMA=old|new; matvec_mma_select(v) switches to v
// (tests, benchmarks) and returns the previous choice; any other v only returns the current one.
constexpr int kMmaOld = 0, kMmaWide = 1;
int matvec_mma_select(int variant);
bool matvec_q8k_supported(uint32_t type);

// Host models of the kernels' decompositions (tests, runnable without a GPU): the Q8K row
// dot with the kernel's 8-lane integer split run lane by lane on the CPU (a [n_tok, n/256]
// blocks, out [n_tok, n_rows]); the device dequantiser's per-value formula on the CPU.
void matvec_q8k_host_model(uint32_t type, const void* w, int64_t n_rows, int64_t n, const block_q8k* a,
                           int64_t n_tok, float* out);
void dequant_row_host_model(uint32_t type, const void* row, int64_t n, float* out);

// matvec-f32act.cu: out = canon_dot(dequantised weight row, x) for F32 F16 BF16 Q4_0 Q8_0
// Q4_K Q5_K Q6_K weights and f32 activations x (device, [n_act_rows, n]).
void matvec_f32act(const MatvecArgs& args, const float* x, void* stream);

// rms-norm.cu: y[r] = (x[r] * canon_rsqrt(canon_div(canon_dot(x[r], x[r]), n) + eps)) * w,
// x, y [n_rows, n], w [n]. y may alias x.
void rms_norm(const float* x, const float* w, float* y, int64_t n_rows, int64_t n, float eps,
              void* stream);

// rms-norm-q8k.cu: rms_norm (as above) and quantize_q8k of its result in one launch:
// y [n_rows, n] f32 and yq [n_rows, n/256] Q8K. n % 256 == 0; y 16-byte aligned, not aliasing x.
void rms_norm_q8k(const float* x, const float* w, float* y, block_q8k* yq, int64_t n_rows, int64_t n, float eps,
                  void* stream);

// qk-norm-rope.cu: per head RMSNorm over head_dim, then NEOX RoPE with host-made tables;
// optionally stores the rotated rows into a KV cache at their positions.
struct NormRopeArgs {
    const float* x = nullptr;         // device [n_tok, n_heads, hd]
    const float* w = nullptr;         // device [hd] norm weight
    float eps = 1e-6f;                // RMSNorm epsilon
    int n_tok = 0;                    // tokens
    int n_heads = 0;                  // heads per token
    int hd = 0;                       // head_dim (even, <= 256)
    const int32_t* pos = nullptr;     // device [n_tok] positions (< n_pos)
    const float* rope_cos = nullptr;  // device [n_pos, hd/2]
    const float* rope_sin = nullptr;  // device [n_pos, hd/2]
    int64_t n_pos = 0;                // rows of the tables (bounds; checked on the host side)
    float* normed = nullptr;          // device [n_tok, n_heads, hd] (capture) or nullptr
    float* out = nullptr;             // device [n_tok, n_heads, hd] rotated
    void* cache = nullptr;            // device [n_pos, n_heads*hd] KV cache or nullptr
    bool cache_f16 = false;           // cache element type: f16 (canon_f32_to_f16) or f32
};
void norm_rope(const NormRopeArgs& args, void* stream);

// qk-norm-rope.cu: cache row pos[t] = x[t] (x [n_tok, row_len] f32; cache [n_ctx, row_len]
// f16 or f32). Rows with pos[t] outside [0, n_ctx) are skipped (the host validates before).
void kv_store(const float* x, const int32_t* pos, int n_tok, int64_t row_len, void* cache,
              int64_t n_ctx, bool cache_f16, void* stream);

// attention.cu: causal GQA attention of each query token over cache rows 0..pos[t].
struct AttentionArgs {
    const float* q = nullptr;         // device [n_tok, n_head, hd] (rotated)
    const void* k_cache = nullptr;    // device [n_ctx, n_head_kv*hd]
    const void* v_cache = nullptr;    // device [n_ctx, n_head_kv*hd]
    bool cache_f16 = false;           // cache element type
    int64_t n_ctx = 0;                // cache rows (positions >= n_ctx give NaN rows)
    const int32_t* pos = nullptr;     // device [n_tok] query positions
    int n_tok = 0;                    // query tokens
    int n_head = 0;                   // query heads
    int n_head_kv = 0;                // kv heads (n_head % n_head_kv == 0)
    int hd = 0;                       // head_dim (<= 256)
    float* out = nullptr;             // device [n_tok, n_head*hd]
    // Split-K over key tiles (decode at long context): blocks per (tile, head, token), tile
    // partials combined in ascending tile order — the same bits as the one-block-per-head path.
    float* scratch = nullptr;         // device, attention_scratch_floats(...) floats, or nullptr
    size_t scratch_floats = 0;        // size of scratch
    int64_t max_pos = -1;             // largest pos[t] if known on the host (-1: unknown)
    // The tiled prefill kernel keeps its scores in scratch (instead of recomputing them in its
    // second pass) when scratch holds attention_prefill_scratch_floats(n_tok, n_head, n_head_kv,
    // max_pos + 1) floats (n_ctx when max_pos is unknown) and split != 1.
    // 0 auto; 1 never split-K (tiled prefill kernel for n_tok > 8, else one block per
    // (token, head)); 2 always split-K (needs scratch); 3 the tiled prefill kernel for any n_tok;
    // 4 one block per (token, head) for any n_tok (the pre-tiling prefill kernel, kept for
    // comparisons). Every choice gives the same bits.
    int split = 0;
};
void attention(const AttentionArgs& args, void* stream);
// Scratch floats the split-K path needs for n_tok query tokens.
size_t attention_scratch_floats(int n_tok, int n_head, int hd, int64_t n_ctx);
// Scratch floats of the tiled prefill kernel's score cache for n_tok tokens and keys 0 .. n_keys-1.
size_t attention_prefill_scratch_floats(int n_tok, int n_head, int n_head_kv, int64_t n_keys);

// router.cu: softmax over the logits of each token, top-k (ties -> lower index, ranked by
// descending probability), weights renormalised by their sequential sum.
void router_topk(const float* logits, int n_tok, int n_expert, int k, float* probs,
                 int32_t* ids, float* weights, void* stream);

// swiglu.cu: s[i] = canon_silu(g[i]) * u[i].
void swiglu(const float* g, const float* u, float* s, int64_t n, void* stream);

// moe-combine.cu: moe[t][d] = sequential canon_fma over ranks r of w[t][r] * y[t][r][d] from
// +0.0f; out = residual + moe. y [n_tok, k, n], w [n_tok, k], residual/out/moe [n_tok, n];
// moe may be nullptr (no capture), out (with residual) may be nullptr (moe only); out may
// alias residual.
void moe_combine(const float* y, const float* w, const float* residual, int n_tok, int k,
                 int64_t n, float* moe, float* out, void* stream);

// embed.cu: out[t] = dequantised row tokens[t] of table ([n_vocab, n] of `type`).
// Token ids outside [0, n_vocab) give NaN rows (the host validates ids before).
void embed(uint32_t type, const void* table, int64_t n_vocab, int64_t n, const int32_t* tokens,
           int n_tok, float* out, void* stream);

// add.cu: c = a + b elementwise (c may alias a or b).
void add(const float* a, const float* b, float* c, int64_t n, void* stream);

}  // namespace qwen3moe::cuda
