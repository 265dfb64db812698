// cuda-backend.cu — the Backend interface on the GPU (see cuda-backend.h).
//
// Buffers mirror the CPU backend's: one device buffer per Act ([cap][width] f32, int32 for
// router_indices), q8 copies of `norm` and `attn_out` ([cap][width/256] Q8K blocks), the
// expert hidden activations' q8 copy, the KV cache [n_layer][n_ctx][kv_dim] (f16 in q8 mode,
// f32 in f32 mode, as the CPU's KVCache) and the logits rows [rows][n_vocab]. Token ids and
// positions of the batch are uploaded in begin_batch (they are inputs, not round trips).
// Expert routing stays on the GPU: the expert matvecs read the router's indices directly.
#include "cuda/cuda-backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/cuda-ops.h"
#include "cuda/decode-common.cuh"
#include "cuda/decode-ops.h"
#include "model/qwen3moe.h"
#include "quant/ggml-types.h"
#include "ops/matvec.h"
#include "runtime/errors.h"

namespace qwen3moe::cuda {

namespace {

// n rounded up to whole 16-byte units.
size_t padded16(size_t n) { return (n + 15) & ~size_t(15); }

constexpr int kSplitRows = 8;  // batches up to this many rows may use split-K attention
// Prefill batches (more than kSplitRows tokens) keep their attention scores for keys below this
// many in a buffer sized with the batch (beyond it the tiled kernel recomputes them: same bits).
constexpr int64_t kPrefillScoreKeys = 8192;

std::string mib(size_t b) { return std::to_string((b + (1u << 20) - 1) >> 20) + " MiB"; }

// Page-locked host memory (cudaHostAlloc), freed with the object.
class PinnedHost {
public:
    PinnedHost() = default;
    explicit PinnedHost(size_t bytes) { Q3_CUDA_CHECK(cudaHostAlloc(&p_, bytes, cudaHostAllocDefault)); }
    ~PinnedHost() { release(); }
    PinnedHost(PinnedHost&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
    PinnedHost& operator=(PinnedHost&& o) noexcept {
        if (this != &o) {
            release();
            p_ = o.p_;
            o.p_ = nullptr;
        }
        return *this;
    }
    void* get() const { return p_; }

private:
    void release() {
        if (p_ && cudaFreeHost(p_) != cudaSuccess) cudaGetLastError();
        p_ = nullptr;
    }
    void* p_ = nullptr;
};

// Pinned staging buffers for the weight upload (two, so the file read of one chunk overlaps
// the copy of the previous).
class Staging {
public:
    explicit Staging(size_t bytes) : bytes_(bytes) {
        for (int i = 0; i < 2; ++i) {
            Q3_CUDA_CHECK(cudaHostAlloc(&buf_[i], bytes, cudaHostAllocDefault));
            Q3_CUDA_CHECK(cudaEventCreateWithFlags(&done_[i], cudaEventDisableTiming));
        }
    }
    ~Staging() {
        for (int i = 0; i < 2; ++i) {
            if (done_[i]) {
                cudaEventSynchronize(done_[i]);
                cudaEventDestroy(done_[i]);
            }
            if (buf_[i]) cudaFreeHost(buf_[i]);
        }
        cudaGetLastError();
    }
    Staging(const Staging&) = delete;
    Staging& operator=(const Staging&) = delete;

    // Copies host bytes (e.g. the mapped file) to the device through the staging buffers.
    void upload(void* dst, const uint8_t* src, size_t n, cudaStream_t stream, const std::function<void(size_t)>& tick) {
        for (size_t off = 0; off < n; off += bytes_) {
            const size_t len = std::min(bytes_, n - off);
            Q3_CUDA_CHECK(cudaEventSynchronize(done_[cur_]));  // the buffer's previous copy finished
            std::memcpy(buf_[cur_], src + off, len);
            Q3_CUDA_CHECK(cudaMemcpyAsync(static_cast<uint8_t*>(dst) + off, buf_[cur_], len, cudaMemcpyHostToDevice,
                                          stream));
            Q3_CUDA_CHECK(cudaEventRecord(done_[cur_], stream));
            cur_ ^= 1;
            if (tick) tick(len);
        }
    }

private:
    size_t bytes_ = 0;                       // bytes per staging buffer
    void* buf_[2] = {nullptr, nullptr};      // pinned host memory
    cudaEvent_t done_[2] = {nullptr, nullptr};  // copy out of buf_[i] finished
    int cur_ = 0;                            // buffer to fill next
};

class CudaBackend final : public Backend {
public:
    CudaBackend(const HParams& hp, ActMode mode, int n_ctx, const RopeTable& rope, const Weights& w,
                const CudaBackendOptions& opt);
    ~CudaBackend() override;
    CudaBackend(const CudaBackend&) = delete;
    CudaBackend& operator=(const CudaBackend&) = delete;

    const char* name() const override { return "cuda"; }
    void begin_batch(const int32_t* tokens, int T, int pos0) override;
    void embed(const Tensor& token_embd, Act out) override;
    void rms_norm(Act in, const NormWeight& w, Act out) override;
    void quantize(Act in) override;
    void matvec(const Tensor& w, Act in, Act out) override;
    void qk_norm_rope_kv_append(int il, const NormWeight& q_norm, const NormWeight& k_norm) override;
    void attention(int il) override;
    void add(Act a, Act b, Act out) override;
    void router_topk() override;
    void moe_experts(const Tensor& gate_exps, const Tensor& up_exps, const Tensor& down_exps, Act in) override;
    void lm_head(const Tensor& w, Act in, Rows rows) override;
    void copy_to_host(Act a, Rows rows, void* dst) override;
    bool decode_step(const Weights& w, int32_t token, int pos, float* logits) override;
    void timer_start() override;
    double timer_stop() override;
    std::string decode_path() const override;
    std::vector<uint64_t> decode_trace() override;
    size_t kv_bytes() const override { return k_cache_.size() + v_cache_.size(); }
    size_t scratch_bytes() const override;

private:
    struct DevWeight {
        DeviceBuffer buf;      // the tensor's bytes, as in the file
        uint32_t type = 0;     // GGMLType id
        int64_t ne[4] = {};    // shape (ne[0] contiguous)
        size_t bytes = 0;      // total bytes
    };
    // Activation buffers of one capacity (swapped in whole by ensure_capacity).
    struct Buffers {
        DeviceBuffer act[(int)Act::count];  // [cap][width] (logits: unused, see logits_)
        DeviceBuffer q8[(int)Act::count];   // [cap][width/256] Q8K for norm and attn_out
        DeviceBuffer hidden_q8;             // [cap*k][n_ff_exp/256] Q8K of expert_swiglu
        DeviceBuffer tokens;                // [cap] int32
        DeviceBuffer pos;                   // [cap] int32
        DeviceBuffer moe_groups;            // moe_group_ints(cap*k, n_expert) int32: slots by expert
        DeviceBuffer attn_scores;           // prefill attention score cache (cap > kSplitRows)
        size_t bytes() const {
            size_t b = hidden_q8.size() + tokens.size() + pos.size() + moe_groups.size() + attn_scores.size();
            for (int i = 0; i < (int)Act::count; ++i) b += act[i].size() + q8[i].size();
            return b;
        }
    };

    void use_device() const { set_device(device_); }
    Buffers make_buffers(int cap) const;
    size_t buffer_bytes(int cap) const;
    size_t prefill_score_floats(int cap) const;  // the prefill attention score cache of cap tokens
    void ensure_capacity(int T);
    const DevWeight& weight(const Tensor& t) const;
    const float* norm(const NormWeight& w) const;
    float* buf(Act a) const { return bufs_.act[(int)a].as<float>(); }
    const block_q8k* q8(Act a, const char* what) const;
    int64_t width(Act a) const { return width_[(int)a]; }
    bool q8_capable(Act a) const { return mode_ == ActMode::q8 && width(a) % QK_K == 0; }
    size_t kv_layer_bytes() const { return (size_t)n_ctx_ * hp_.kv_dim() * (mode_ == ActMode::q8 ? 2 : 4); }
    void* k_layer(int il) const { return k_cache_.as<uint8_t>() + (size_t)il * kv_layer_bytes(); }
    void* v_layer(int il) const { return v_cache_.as<uint8_t>() + (size_t)il * kv_layer_bytes(); }
    MatvecArgs args_for(const DevWeight& d, int n_tok, float* out) const;
    // The fused decode step (decode-ops.h) as a CUDA graph, one per "with logits" flag.
    std::string decode_unsupported(const Weights& w) const;  // "" when the fused step applies
    // The step's launches of layers [l0, l1) on stream_ (the embedding when l0 == 0, the LM head
    // when l1 == n_layer and with_logits); long_ctx: the two-launch attention, not the cluster one.
    void enqueue_decode(const Weights& w, bool with_logits, bool long_ctx, int l0, int l1);
    void build_decode_graph(const Weights& w, bool with_logits, bool long_ctx);
    // The step as consecutive graphs (segments of layers): while the GPU runs one, the host
    // launches the next, so only the first, short graph's launch cost is exposed each step.
    struct DecodeGraph {
        std::vector<cudaGraphExec_t> execs;  // instantiated segments in order (empty: not built)
        const void* act0 = nullptr;          // bufs_.act[0] when captured (buffers reallocated -> rebuild)
    };
    void destroy_decode_graph(DecodeGraph& g);
    std::vector<int> dec_segments_;   // layer bounds of the segments: 0 = b_0 < b_1 < ... = n_layer

    HParams hp_;                  // model hyperparameters
    ActMode mode_;                // q8 or f32 activations
    int n_ctx_;                   // KV positions
    int device_;                  // CUDA device index
    void* stream_ = nullptr;      // the backend's stream (cudaStream_t)
    int64_t width_[(int)Act::count] = {};  // floats (or int32) per row

    std::vector<DevWeight> weights_;       // by Tensor::id
    std::vector<DeviceBuffer> norms_;      // by NormWeight::id: [n] f32
    DeviceBuffer rope_;                    // [2][n_ctx][hd/2]: cos block, then sin block
    DeviceBuffer k_cache_, v_cache_;       // [n_layer][n_ctx][kv_dim] f16 (q8 mode) or f32

    Buffers bufs_;                // current activation buffers
    int cap_ = 0;                 // rows they hold
    DeviceBuffer logits_;         // [rows][n_vocab]
    DeviceBuffer attn_scratch_;   // split-K attention scratch for batches of <= kSplitRows rows
    bool q8_valid_[(int)Act::count] = {};  // q8 copy matches the f32 buffer
    int T_ = 0;                   // rows in the current batch
    int pos0_ = 0;                // position of row 0
    std::vector<int32_t> host_pos_;  // [cap] staging of the positions

    // Fused decode step.
    int dec_state_ = 0;               // 0 undecided, 1 fused path on, -1 off (dec_reason_ says why)
    std::string dec_reason_;          // why the fused path is off
    bool dec_pdl_ = false;            // programmatic dependent launch between its kernels
    int dec_split_ = 1;               // attention blocks per KV head (two-launch attention)
    int dec_cluster_ = 0;             // blocks per cluster of the one-launch attention (0: two launches)
    bool dec_next_norm_ = false;      // dec_down computes the next norm (else the q/k/v kernel)
    bool dec_attn_q8_ = true;         // the attention writes attn_out's Q8K blocks (else the o-proj)
    int dec_cluster_max_pos_ = 0;     // positions from here on take the two-launch attention
    DecodeGraph dec_graph_[2][2];     // [with_logits][long_ctx]
    DeviceBuffer dec_in_;             // [2] int32: token, position of the step
    DeviceBuffer dec_counters_;       // uint32 completion counters (kept zero): attention [n_head_kv],
                                      // router [1], down's next norm [1], SwiGLU chunks
                                      // [n_expert_used][n_ff_exp / 256]
    DeviceBuffer dec_logits_;         // [n_vocab] f32
    DeviceBuffer dec_trace_;          // phase trace [kDecTraceKernels][kDecTraceSlot] (QWEN3MOE_CUDA_DEC_TRACE=1)
    PinnedHost dec_logits_host_;      // [n_vocab] f32: the step's logits come back through it
                                      // (one DMA at full speed instead of a staged pageable copy)
    cudaEvent_t timer_ev_[2] = {nullptr, nullptr};  // benchmark timer: start, stop
};

CudaBackend::CudaBackend(const HParams& hp, ActMode mode, int n_ctx, const RopeTable& rope, const Weights& w,
                         const CudaBackendOptions& opt)
    : hp_(hp), mode_(mode), n_ctx_(n_ctx), device_(opt.device) {
    const int n_dev = [] {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess) {
            cudaGetLastError();
            return 0;
        }
        return n;
    }();
    if (n_dev == 0) throw std::runtime_error("device=\"cuda\": no usable CUDA GPU (no device or no driver)");
    if (device_ < 0 || device_ >= n_dev)
        throw std::invalid_argument("CUDA device " + std::to_string(device_) + " does not exist (" +
                                    std::to_string(n_dev) + " device(s))");
    if (rope.n_pos < n_ctx || rope.half * 2 != hp.head_dim)
        throw std::logic_error("CudaBackend: the RoPE table does not cover n_ctx x head_dim");
    use_device();

    const int64_t E = hp.n_embd, Q = hp.q_dim(), KV = hp.kv_dim(), K = hp.n_expert_used;
    const int64_t widths[(int)Act::count] = {
        E, E, Q, KV, KV, Q, KV, Q, KV, Q, E, E,                       // x .. ffn_inp
        hp.n_expert, hp.n_expert, K, K,                               // router
        K * hp.n_ff_exp, K * hp.n_ff_exp, K * hp.n_ff_exp, K * E, E,  // experts, moe_out
        hp.n_vocab,                                                   // logits
    };
    for (int i = 0; i < (int)Act::count; ++i) width_[i] = widths[i];

    // Norm weights by id.
    std::vector<const NormWeight*> norm_list;
    for (const LayerWeights& L : w.layers)
        for (const NormWeight* nw : {&L.attn_norm, &L.attn_q_norm, &L.attn_k_norm, &L.ffn_norm}) norm_list.push_back(nw);
    norm_list.push_back(&w.output_norm);

    // The memory plan, checked before any allocation.
    size_t weight_bytes = 0;
    for (const Tensor* t : w.all) weight_bytes += padded16(t->row_bytes * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]));
    size_t norm_bytes = 0;
    for (const NormWeight* nw : norm_list) norm_bytes += nw->w.size() * sizeof(float);
    const size_t rope_bytes = rope.data.size() * sizeof(float);
    const size_t kv_total = 2 * (size_t)hp.n_layer * kv_layer_bytes();
    const size_t attn_scratch_bytes =
        attention_scratch_floats(kSplitRows, hp.n_head, hp.head_dim, n_ctx) * sizeof(float);
    // + the fused decode step's logits row and counters.
    const size_t buf_bytes = buffer_bytes(1) + 2 * (size_t)hp.n_vocab * sizeof(float) + attn_scratch_bytes + 256;
    const size_t need = weight_bytes + norm_bytes + rope_bytes + kv_total + buf_bytes;
    size_t free_b = 0, total_b = 0;
    mem_info(&free_b, &total_b);
    if (opt.max_vram && need > opt.max_vram)
        throw OutOfMemory("CUDA out of memory: the model needs " + mib(need) + " on device " + std::to_string(device_) +
                          " (weights " + mib(weight_bytes) + ", KV cache " + mib(kv_total) + " for n_ctx " +
                          std::to_string(n_ctx) + ", buffers " + mib(buf_bytes + norm_bytes + rope_bytes) +
                          ") but max_vram is " + std::to_string(opt.max_vram) + " bytes (" + mib(opt.max_vram) + ")");
    if (need > free_b)
        throw OutOfMemory("CUDA out of memory: the model needs " + mib(need) + " on device " + std::to_string(device_) +
                          " (weights " + mib(weight_bytes) + ", KV cache " + mib(kv_total) + " for n_ctx " +
                          std::to_string(n_ctx) + ", buffers " + mib(buf_bytes + norm_bytes + rope_bytes) +
                          ") but only " + mib(free_b) + " of " + mib(total_b) + " are free");

    stream_ = stream_create();
    try {
        // Weights: one device buffer per tensor id, uploaded through pinned staging.
        weights_.resize(w.all.size());
        const size_t total_up = weight_bytes;
        size_t done = 0;
        auto tick = [&](size_t n) {
            done += n;
            if (opt.progress) opt.progress(done, total_up);
        };
        Staging staging(64u << 20);
        for (size_t id = 0; id < w.all.size(); ++id) {
            const Tensor& t = *w.all[id];
            if (t.id != (int)id) throw std::logic_error("CudaBackend: tensor ids are not 0..n-1 in order");
            DevWeight& d = weights_[id];
            d.type = t.type;
            for (int k = 0; k < 4; ++k) d.ne[k] = t.ne[k];
            d.bytes = t.row_bytes * (size_t)(t.ne[1] * t.ne[2] * t.ne[3]);
            d.buf = DeviceBuffer(padded16(d.bytes));  // whole 16-byte units (decode staging copies)
            staging.upload(d.buf.get(), t.data, d.bytes, to_stream(stream_), tick);
        }
        norms_.resize(norm_list.size());
        for (const NormWeight* nw : norm_list) {
            if (nw->id < 0 || nw->id >= (int)norm_list.size())
                throw std::logic_error("CudaBackend: norm weight '" + nw->name + "' has no id");
            DeviceBuffer b(nw->w.size() * sizeof(float));
            memcpy_h2d(b.get(), nw->w.data(), b.size(), stream_);
            norms_[nw->id] = std::move(b);
        }
        rope_ = DeviceBuffer(rope_bytes);
        // Only the first n_ctx rows of each block are needed; the table is [2][n_pos][half].
        const size_t blk = (size_t)n_ctx * rope.half * sizeof(float);
        memcpy_h2d(rope_.get(), rope.data.data(), blk, stream_);
        memcpy_h2d(rope_.as<uint8_t>() + blk, rope.data.data() + (size_t)rope.n_pos * rope.half, blk, stream_);
        attn_scratch_ = DeviceBuffer(attn_scratch_bytes);
        k_cache_ = DeviceBuffer(kv_total / 2);
        v_cache_ = DeviceBuffer(kv_total / 2);
        memset_device(k_cache_.get(), 0, k_cache_.size(), stream_);
        memset_device(v_cache_.get(), 0, v_cache_.size(), stream_);
        ensure_capacity(1);
        dec_in_ = DeviceBuffer(2 * sizeof(int32_t));
        dec_counters_ = DeviceBuffer((size_t)(hp.n_head_kv + 2 + hp.n_expert_used * (hp.n_ff_exp / QK_K + 1)) *
                                     sizeof(unsigned));
        memset_device(dec_counters_.get(), 0, dec_counters_.size(), stream_);
        dec_logits_ = DeviceBuffer((size_t)hp.n_vocab * sizeof(float));
        dec_logits_host_ = PinnedHost((size_t)hp.n_vocab * sizeof(float));
        stream_sync(stream_);
    } catch (...) {
        // Members already built are freed by their destructors; the stream is not a member
        // object with a destructor, so release it here.
        cudaStreamSynchronize(to_stream(stream_));
        stream_destroy(stream_);
        stream_ = nullptr;
        throw;
    }
}

CudaBackend::~CudaBackend() {
    if (cudaSetDevice(device_) != cudaSuccess) cudaGetLastError();
    for (auto& gl : dec_graph_)
        for (DecodeGraph& g : gl) destroy_decode_graph(g);
    for (cudaEvent_t& e : timer_ev_)
        if (e && cudaEventDestroy(e) != cudaSuccess) cudaGetLastError();
    if (stream_) {
        if (cudaStreamSynchronize(to_stream(stream_)) != cudaSuccess) cudaGetLastError();
        stream_destroy(stream_);
    }
}

size_t CudaBackend::prefill_score_floats(int cap) const {
    if (cap <= kSplitRows) return 0;
    return attention_prefill_scratch_floats(cap, hp_.n_head, hp_.n_head_kv, std::min<int64_t>(n_ctx_, kPrefillScoreKeys));
}

size_t CudaBackend::buffer_bytes(int cap) const {
    size_t b = 0;
    for (int i = 0; i < (int)Act::count; ++i) {
        if (i == (int)Act::logits) continue;
        b += (size_t)cap * width_[i] * 4;
        if ((i == (int)Act::norm || i == (int)Act::attn_out) && q8_capable((Act)i))
            b += (size_t)cap * (width_[i] / QK_K) * sizeof(block_q8k);
    }
    if (mode_ == ActMode::q8 && hp_.n_ff_exp % QK_K == 0)
        b += (size_t)cap * hp_.n_expert_used * (hp_.n_ff_exp / QK_K) * sizeof(block_q8k);
    if (cap > 1 && hp_.n_expert <= kMoeGroupMaxMat)
        b += moe_group_ints((int64_t)cap * hp_.n_expert_used, hp_.n_expert) * sizeof(int32_t);
    b += prefill_score_floats(cap) * sizeof(float);
    return b + 2 * (size_t)cap * 4;
}

CudaBackend::Buffers CudaBackend::make_buffers(int cap) const {
    Buffers b;
    for (int i = 0; i < (int)Act::count; ++i) {
        if (i == (int)Act::logits) continue;  // lm_head allocates its rows on demand
        b.act[i] = DeviceBuffer((size_t)cap * width_[i] * 4);  // f32 or int32
        if ((i == (int)Act::norm || i == (int)Act::attn_out) && q8_capable((Act)i))
            b.q8[i] = DeviceBuffer((size_t)cap * (width_[i] / QK_K) * sizeof(block_q8k));
    }
    if (mode_ == ActMode::q8 && hp_.n_ff_exp % QK_K == 0)
        b.hidden_q8 = DeviceBuffer((size_t)cap * hp_.n_expert_used * (hp_.n_ff_exp / QK_K) * sizeof(block_q8k));
    b.tokens = DeviceBuffer((size_t)cap * 4);
    b.pos = DeviceBuffer((size_t)cap * 4);
    if (cap > 1 && hp_.n_expert <= kMoeGroupMaxMat)  // prefill: expert slots grouped by expert
        b.moe_groups = DeviceBuffer(moe_group_ints((int64_t)cap * hp_.n_expert_used, hp_.n_expert) * sizeof(int32_t));
    if (const size_t f = prefill_score_floats(cap)) b.attn_scores = DeviceBuffer(f * sizeof(float));
    return b;
}

void CudaBackend::ensure_capacity(int T) {
    if (T <= cap_) return;
    // Build the new set completely before dropping the old one: an OutOfMemory leaves the
    // backend as it was. The old buffers may still be read by queued work: wait for it.
    stream_sync(stream_);
    Buffers nb = make_buffers(T);
    bufs_ = std::move(nb);
    cap_ = T;
    host_pos_.assign((size_t)T, 0);
}

size_t CudaBackend::scratch_bytes() const {
    return bufs_.bytes() + logits_.size() + attn_scratch_.size() + dec_in_.size() + dec_counters_.size() +
           dec_logits_.size();
}

const CudaBackend::DevWeight& CudaBackend::weight(const Tensor& t) const {
    if (t.id < 0 || t.id >= (int)weights_.size())
        throw std::logic_error("CudaBackend: tensor '" + t.name + "' has no device copy (id " + std::to_string(t.id) + ")");
    const DevWeight& d = weights_[t.id];
    if (d.type != t.type || d.ne[0] != t.ne[0] || d.ne[1] != t.ne[1] || d.ne[2] != t.ne[2])
        throw std::logic_error("CudaBackend: device copy of tensor '" + t.name + "' does not match it");
    return d;
}

const float* CudaBackend::norm(const NormWeight& w) const {
    if (w.id < 0 || w.id >= (int)norms_.size() || norms_[w.id].size() != w.w.size() * sizeof(float))
        throw std::logic_error("CudaBackend: norm weight '" + w.name + "' has no device copy");
    return norms_[w.id].as<float>();
}

const block_q8k* CudaBackend::q8(Act a, const char* what) const {
    if (!q8_valid_[(int)a] || !bufs_.q8[(int)a].get())
        throw std::logic_error(std::string("CudaBackend: ") + what + ": input has no q8 copy");
    return bufs_.q8[(int)a].as<block_q8k>();
}

MatvecArgs CudaBackend::args_for(const DevWeight& d, int n_tok, float* out) const {
    MatvecArgs p;
    p.type = d.type;
    p.w = d.buf.get();
    p.n = d.ne[0];
    p.n_rows = d.ne[1];
    p.n_mat = d.ne[2];
    p.n_tok = n_tok;
    p.out = out;
    return p;
}

void CudaBackend::begin_batch(const int32_t* tokens, int T, int pos0) {
    if (T <= 0 || pos0 < 0 || (int64_t)pos0 + T > n_ctx_) throw std::logic_error("CudaBackend::begin_batch: bad batch");
    use_device();
    ensure_capacity(T);
    for (int t = 0; t < T; ++t) host_pos_[t] = pos0 + t;
    memcpy_h2d(bufs_.tokens.get(), tokens, (size_t)T * 4, stream_);
    memcpy_h2d(bufs_.pos.get(), host_pos_.data(), (size_t)T * 4, stream_);
    T_ = T;
    pos0_ = pos0;
    for (bool& v : q8_valid_) v = false;
}

void CudaBackend::embed(const Tensor& token_embd, Act out) {
    use_device();
    const DevWeight& d = weight(token_embd);
    if (d.ne[0] != width(out)) throw std::logic_error("CudaBackend::embed: width mismatch");
    cuda::embed(d.type, d.buf.get(), d.ne[1], d.ne[0], bufs_.tokens.as<int32_t>(), T_, buf(out), stream_);
    q8_valid_[(int)out] = false;
}

void CudaBackend::rms_norm(Act in, const NormWeight& w, Act out) {
    use_device();
    if ((int64_t)w.w.size() != width(in) || width(in) != width(out))
        throw std::logic_error("CudaBackend::rms_norm: width mismatch for '" + w.name + "'");
    if (q8_capable(out) && bufs_.q8[(int)out].get() && in != out) {
        // Every norm feeding quantised matvecs is quantised next (quantize() then finds the q8
        // copy valid): one fused launch, the same two results.
        rms_norm_q8k(buf(in), norm(w), buf(out), bufs_.q8[(int)out].as<block_q8k>(), T_, width(in), hp_.rms_eps,
                     stream_);
        q8_valid_[(int)out] = true;
        return;
    }
    cuda::rms_norm(buf(in), norm(w), buf(out), T_, width(in), hp_.rms_eps, stream_);
    q8_valid_[(int)out] = false;
}

void CudaBackend::quantize(Act in) {
    use_device();
    // Rule: activations entering quantised matmuls are quantised once per token per input
    // vector and reused by every matrix reading them.
    if (!q8_capable(in) || !bufs_.q8[(int)in].get()) return;
    if (q8_valid_[(int)in]) return;  // already quantised with the f32 values (rms_norm_q8k)
    quantize_q8k(buf(in), bufs_.q8[(int)in].as<block_q8k>(), T_, width(in), stream_);
    q8_valid_[(int)in] = true;
}

void CudaBackend::matvec(const Tensor& w, Act in, Act out) {
    use_device();
    const DevWeight& d = weight(w);
    if (d.ne[0] != width(in) || d.ne[1] != width(out))
        throw std::logic_error("CudaBackend::matvec: shape of '" + w.name + "' does not fit the buffers");
    const MatvecArgs p = args_for(d, T_, buf(out));
    if (matvec_uses_q8(d.type, mode_))
        matvec_q8k(p, q8(in, w.name.c_str()), stream_);
    else
        matvec_f32act(p, buf(in), stream_);
    q8_valid_[(int)out] = false;
}

void CudaBackend::qk_norm_rope_kv_append(int il, const NormWeight& q_norm, const NormWeight& k_norm) {
    use_device();
    if (il < 0 || il >= hp_.n_layer) throw std::logic_error("CudaBackend: layer out of range");
    const int hd = hp_.head_dim;
    const bool f16 = mode_ == ActMode::q8;  // Rule: KV cache f16 in q8 mode, f32 in f32 mode
    const float* rope_cos = rope_.as<float>();
    const float* rope_sin = rope_cos + (size_t)n_ctx_ * (hd / 2);
    NormRopeArgs q;
    q.x = buf(Act::q);
    q.w = norm(q_norm);
    q.eps = hp_.rms_eps;
    q.n_tok = T_;
    q.n_heads = hp_.n_head;
    q.hd = hd;
    q.pos = bufs_.pos.as<int32_t>();
    q.rope_cos = rope_cos;
    q.rope_sin = rope_sin;
    q.n_pos = n_ctx_;
    q.normed = buf(Act::q_normed);
    q.out = buf(Act::q_rope);
    norm_rope(q, stream_);
    NormRopeArgs k = q;
    k.x = buf(Act::k);
    k.w = norm(k_norm);
    k.n_heads = hp_.n_head_kv;
    k.normed = buf(Act::k_normed);
    k.out = buf(Act::k_rope);
    k.cache = k_layer(il);  // K after RoPE
    k.cache_f16 = f16;
    norm_rope(k, stream_);
    kv_store(buf(Act::v), bufs_.pos.as<int32_t>(), T_, hp_.kv_dim(), v_layer(il), n_ctx_, f16, stream_);
    for (Act a : {Act::q_normed, Act::k_normed, Act::q_rope, Act::k_rope}) q8_valid_[(int)a] = false;
}

void CudaBackend::attention(int il) {
    use_device();
    if (il < 0 || il >= hp_.n_layer) throw std::logic_error("CudaBackend: layer out of range");
    AttentionArgs p;
    p.q = buf(Act::q_rope);
    p.k_cache = k_layer(il);
    p.v_cache = v_layer(il);
    p.cache_f16 = mode_ == ActMode::q8;
    p.n_ctx = n_ctx_;
    p.pos = bufs_.pos.as<int32_t>();
    p.n_tok = T_;
    p.n_head = hp_.n_head;
    p.n_head_kv = hp_.n_head_kv;
    p.hd = hp_.head_dim;
    p.out = buf(Act::attn_out);
    p.max_pos = pos0_ + T_ - 1;
    if (T_ <= kSplitRows) {  // decode: split-K over key tiles when the context is long
        p.scratch = attn_scratch_.as<float>();
        p.scratch_floats = attn_scratch_.size() / sizeof(float);
    } else if (bufs_.attn_scores.size()) {  // prefill: the tiled kernel's score cache
        p.scratch = bufs_.attn_scores.as<float>();
        p.scratch_floats = bufs_.attn_scores.size() / sizeof(float);
    }
    cuda::attention(p, stream_);
    q8_valid_[(int)Act::attn_out] = false;
}

void CudaBackend::add(Act a, Act b, Act out) {
    use_device();
    cuda::add(buf(a), buf(b), buf(out), (int64_t)T_ * width(out), stream_);  // Rule: one rounding
    q8_valid_[(int)out] = false;
}

void CudaBackend::router_topk() {
    use_device();
    cuda::router_topk(buf(Act::router_logits), T_, hp_.n_expert, hp_.n_expert_used, buf(Act::router_probs),
                bufs_.act[(int)Act::router_indices].as<int32_t>(), buf(Act::router_weights), stream_);
}

void CudaBackend::moe_experts(const Tensor& gate_exps, const Tensor& up_exps, const Tensor& down_exps, Act in) {
    use_device();
    const int K = hp_.n_expert_used;
    const int64_t E = hp_.n_embd, F = hp_.n_ff_exp;
    const DevWeight& g = weight(gate_exps);
    const DevWeight& u = weight(up_exps);
    const DevWeight& dn = weight(down_exps);
    if (g.ne[0] != E || g.ne[1] != F || u.ne[0] != E || u.ne[1] != F || dn.ne[0] != F || dn.ne[1] != E ||
        width(in) != E)
        throw std::logic_error("CudaBackend::moe_experts: expert tensor shapes do not fit");
    const int32_t* ids = bufs_.act[(int)Act::router_indices].as<int32_t>();
    // Several tokens: sort the slots by expert on the device once, so each expert matrix is
    // read once per tile of its tokens (the per-slot arithmetic is unchanged).
    const int32_t* groups = nullptr;
    if (T_ > 1 && bufs_.moe_groups.get() && g.ne[2] == hp_.n_expert && u.ne[2] == g.ne[2] && dn.ne[2] == g.ne[2]) {
        moe_group(ids, (int64_t)T_ * K, g.ne[2], bufs_.moe_groups.as<int32_t>(), stream_);
        groups = bufs_.moe_groups.as<int32_t>();
    }
    // Slot (t, r) = expert ids[t][r] in rank order; gate/up read token t's input, down reads
    // the slot's own hidden activation.
    auto expert_args = [&](const DevWeight& d, float* out, bool per_slot) {
        MatvecArgs p = args_for(d, T_, out);
        p.ids = ids;
        p.n_used = K;
        p.act_per_slot = per_slot;
        p.groups = groups;
        return p;
    };
    for (const auto& [d, out] : {std::pair<const DevWeight*, Act>{&g, Act::expert_gate}, {&u, Act::expert_up}}) {
        const MatvecArgs p = expert_args(*d, buf(out), false);
        if (matvec_uses_q8(d->type, mode_))
            matvec_q8k(p, q8(in, "moe_experts"), stream_);
        else
            matvec_f32act(p, buf(in), stream_);
    }
    swiglu(buf(Act::expert_gate), buf(Act::expert_up), buf(Act::expert_swiglu), (int64_t)T_ * K * F, stream_);
    const MatvecArgs pd = expert_args(dn, buf(Act::expert_out), true);
    if (matvec_uses_q8(dn.type, mode_)) {
        if (!bufs_.hidden_q8.get()) throw std::logic_error("CudaBackend::moe_experts: no q8 buffer for the hidden rows");
        // The down projection's input, quantised once per (token, rank).
        quantize_q8k(buf(Act::expert_swiglu), bufs_.hidden_q8.as<block_q8k>(), (int64_t)T_ * K, F, stream_);
        matvec_q8k(pd, bufs_.hidden_q8.as<block_q8k>(), stream_);
    } else {
        matvec_f32act(pd, buf(Act::expert_swiglu), stream_);
    }
    // Rule: moe[d] = +0.0f; for r: moe[d] = canon_fma(w_r, y_r[d], moe[d])
    moe_combine(buf(Act::expert_out), buf(Act::router_weights), nullptr, T_, K, E, buf(Act::moe_out), nullptr, stream_);
    for (Act a : {Act::expert_gate, Act::expert_up, Act::expert_swiglu, Act::expert_out, Act::moe_out})
        q8_valid_[(int)a] = false;
}

void CudaBackend::lm_head(const Tensor& w, Act in, Rows rows) {
    use_device();
    const DevWeight& d = weight(w);
    if (rows.r0 < 0 || rows.n < 0 || rows.r0 + rows.n > T_) throw std::logic_error("CudaBackend::lm_head: bad rows");
    if (d.ne[0] != width(in) || d.ne[1] != width(Act::logits))
        throw std::logic_error("CudaBackend::lm_head: shape of '" + w.name + "' does not fit");
    if (rows.n == 0) return;
    const size_t need = (size_t)rows.n * width(Act::logits) * sizeof(float);
    if (logits_.size() < need) {  // grows once per larger row count
        stream_sync(stream_);
        logits_ = DeviceBuffer();
        logits_ = DeviceBuffer(need);
    }
    const MatvecArgs p = args_for(d, rows.n, logits_.as<float>());
    const int64_t win = width(in);
    if (matvec_uses_q8(d.type, mode_))
        matvec_q8k(p, q8(in, "lm_head") + (int64_t)rows.r0 * (win / QK_K), stream_);
    else
        matvec_f32act(p, buf(in) + (int64_t)rows.r0 * win, stream_);
}

void CudaBackend::copy_to_host(Act a, Rows rows, void* dst) {
    use_device();
    const int64_t w = width(a);
    if (rows.r0 < 0 || rows.n < 0) throw std::logic_error("CudaBackend::copy_to_host: bad rows");
    const size_t off = (size_t)rows.r0 * w * 4, len = (size_t)rows.n * w * 4;
    const DeviceBuffer& src = a == Act::logits ? logits_ : bufs_.act[(int)a];
    if (off + len > src.size()) throw std::logic_error("CudaBackend::copy_to_host: rows outside the buffer");
    memcpy_d2h(dst, src.as<uint8_t>() + off, len, stream_);  // synchronises the stream
}


// ---- the fused decode step ------------------------------------------------------------------

std::string CudaBackend::decode_unsupported(const Weights& w) const {
    const char* env = std::getenv("QWEN3MOE_CUDA_GRAPH");
    if (env && std::string(env) == "0") return "QWEN3MOE_CUDA_GRAPH=0";
    if (mode_ != ActMode::q8) return "activations=\"f32\"";
    const int64_t E = hp_.n_embd, Q = hp_.q_dim(), F = hp_.n_ff_exp;
    if (E % QK_K || Q % QK_K || F % QK_K) return "a row length is not a multiple of 256";
    if (E / QK_K > kDecMaxBlocks || Q / QK_K > kDecMaxBlocks || F / QK_K > kDecMaxBlocks)
        return "a row longer than 32 blocks of 256";
    if (hp_.head_dim > 256 || hp_.head_dim % 32 || hp_.n_head % hp_.n_head_kv || hp_.n_head / hp_.n_head_kv > 8)
        return "head layout outside the fused kernels' range";
    if (hp_.n_expert > 1024 || hp_.n_expert_used > 64) return "more than 1024 experts or 64 used";
    if ((size_t)E * 4 + (size_t)(E / QK_K) * sizeof(block_q8k) + 4096 > 48 * 1024) return "n_embd too large";
    if ((size_t)(Q / QK_K) * sizeof(block_q8k) > 48 * 1024) return "q_dim too large";
    if (!bufs_.hidden_q8.get()) return "no q8 buffer for the expert hidden rows";
    auto q8t = [&](const Tensor& t) { return dec_q8k_type(t.type); };
    for (const LayerWeights& L : w.layers) {
        if (!q8t(L.attn_q) || !q8t(L.attn_k) || !q8t(L.attn_v) || !q8t(L.attn_output) || !q8t(L.ffn_gate_exps) ||
            !q8t(L.ffn_up_exps) || !q8t(L.ffn_down_exps))
            return "a weight type without a fused decode dot";
        const uint32_t rt = L.ffn_gate_inp.type;
        if (!(rt == GGML_TYPE_F32 || rt == GGML_TYPE_F16 || rt == GGML_TYPE_BF16 || dec_q8k_type(rt)))
            return "router type without a fused decode dot";
        if (L.ffn_gate_exps.ne[2] != hp_.n_expert || L.ffn_up_exps.ne[2] != hp_.n_expert ||
            L.ffn_down_exps.ne[2] != hp_.n_expert)
            return "expert tensors do not hold n_expert matrices";
    }
    if (!q8t(w.output) && !(w.output.type == GGML_TYPE_F32 || w.output.type == GGML_TYPE_F16 ||
                            w.output.type == GGML_TYPE_BF16))
        return "output type";
    if (attn_scratch_.size() < dec_attention_scratch_floats(hp_.n_head, hp_.head_dim, n_ctx_) * sizeof(float))
        return "attention scratch too small";
    return "";
}

void CudaBackend::enqueue_decode(const Weights& w, bool with_logits, bool long_ctx, int l0, int l1) {
    const int64_t E = hp_.n_embd, F = hp_.n_ff_exp;
    const int K = hp_.n_expert_used;
    const int32_t* in = dec_in_.as<int32_t>();  // [token, position]
    const int32_t* pos = in + 1;
    const bool pdl = dec_pdl_;
    const bool f16 = mode_ == ActMode::q8;
    if (l0 == 0) {
        const DevWeight& te = weight(w.token_embd);
        cuda::embed(te.type, te.buf.get(), te.ne[1], te.ne[0], in, 1, buf(Act::x), stream_);
    }
    auto mat = [&](const Tensor& t, Act out) {
        const DevWeight& d = weight(t);
        DecMatrix m;
        m.w = d.buf.get();
        m.type = d.type;
        m.n_rows = d.ne[1];
        m.out = buf(out);
        return m;
    };
    block_q8k* norm_q8 = bufs_.q8[(int)Act::norm].as<block_q8k>();
    // The phase trace's slot of each kernel of a layer (every layer overwrites the same slots).
    auto trace = [&](int slot) -> unsigned long long* {
        return dec_trace_.get() ? dec_trace_.as<unsigned long long>() + slot * kDecTraceSlot : nullptr;
    };
    const float* rope_cos = rope_.as<float>();
    const float* rope_sin = rope_cos + (size_t)n_ctx_ * (hp_.head_dim / 2);
    for (int il = l0; il < l1; ++il) {
        const LayerWeights& L = w.layers[il];
        DecNormMatvecArgs a;
        a.x = buf(Act::x);
        a.norm_w = norm(L.attn_norm);
        a.eps = hp_.rms_eps;
        a.n = E;
        a.mat[0] = mat(L.attn_q, Act::q);
        a.mat[1] = mat(L.attn_k, Act::k);
        a.mat[2] = mat(L.attn_v, Act::v);
        a.n_mat = 3;
        a.norm_out = buf(Act::norm);
        a.norm_q8 = norm_q8;
        if (il > 0 && dec_next_norm_) a.in_q8 = norm_q8;  // made by the previous layer's dec_down
        a.trace = trace(0);
        dec_norm_matvec(a, stream_, pdl && il > l0);  // a segment's first kernel follows a whole graph

        DecAttnArgs at;
        at.q = buf(Act::q);
        at.k = buf(Act::k);
        at.v = buf(Act::v);
        at.q_norm = norm(L.attn_q_norm);
        at.k_norm = norm(L.attn_k_norm);
        at.eps = hp_.rms_eps;
        at.rope_cos = rope_cos;
        at.rope_sin = rope_sin;
        at.q_normed = buf(Act::q_normed);
        at.q_rope = buf(Act::q_rope);
        at.k_normed = buf(Act::k_normed);
        at.k_rope = buf(Act::k_rope);
        at.k_cache = k_layer(il);
        at.v_cache = v_layer(il);
        at.cache_f16 = f16;
        at.n_ctx = n_ctx_;
        at.pos = pos;
        at.n_head = hp_.n_head;
        at.n_head_kv = hp_.n_head_kv;
        at.hd = hp_.head_dim;
        at.out = buf(Act::attn_out);
        const bool attn_q8 = dec_attn_q8_ && (hp_.n_head / hp_.n_head_kv) * hp_.head_dim % QK_K == 0 &&
                             bufs_.q8[(int)Act::attn_out].get();
        at.out_q8 = attn_q8 ? bufs_.q8[(int)Act::attn_out].as<block_q8k>() : nullptr;
        at.scratch = attn_scratch_.as<float>();
        at.counters = dec_counters_.as<unsigned>();
        at.n_split = dec_split_;
        at.cluster = long_ctx ? 0 : dec_cluster_;
        at.trace = trace(1);
        dec_attention(at, stream_, pdl);

        DecMatvecAddArgs o;
        o.in = buf(Act::attn_out);
        o.in_q8 = at.out_q8;
        o.n = hp_.q_dim();
        o.mat = mat(L.attn_output, Act::attn_proj);
        o.residual = buf(Act::x);
        o.sum = buf(Act::ffn_inp);
        o.trace = trace(2);
        dec_matvec_add(o, stream_, pdl);

        const DevWeight& rw = weight(L.ffn_gate_inp);
        DecRouterArgs ro;
        ro.x = buf(Act::ffn_inp);
        ro.norm_w = norm(L.ffn_norm);
        ro.eps = hp_.rms_eps;
        ro.n = E;
        ro.w = rw.buf.get();
        ro.type = rw.type;
        ro.n_expert = hp_.n_expert;
        ro.k = K;
        ro.norm_out = buf(Act::norm);
        ro.norm_q8 = norm_q8;
        ro.logits = buf(Act::router_logits);
        ro.probs = buf(Act::router_probs);
        ro.ids = bufs_.act[(int)Act::router_indices].as<int32_t>();
        ro.weights = buf(Act::router_weights);
        ro.counter = dec_counters_.as<unsigned>() + hp_.n_head_kv;
        ro.trace = trace(3);
        dec_router(ro, stream_, pdl);

        const DevWeight& g = weight(L.ffn_gate_exps);
        const DevWeight& u = weight(L.ffn_up_exps);
        const DevWeight& dn = weight(L.ffn_down_exps);
        DecGateUpArgs gu;
        gu.a = norm_q8;
        gu.n = E;
        gu.ids = ro.ids;
        gu.k = K;
        gu.gate = g.buf.get();
        gu.gate_type = g.type;
        gu.up = u.buf.get();
        gu.up_type = u.type;
        gu.n_ff = F;
        gu.n_mat = g.ne[2];
        gu.gate_out = buf(Act::expert_gate);
        gu.up_out = buf(Act::expert_up);
        gu.swiglu_out = buf(Act::expert_swiglu);
        gu.swiglu_q8 = bufs_.hidden_q8.as<block_q8k>();
        gu.counters = dec_counters_.as<unsigned>() + hp_.n_head_kv + 2;
        gu.trace = trace(4);
        dec_gate_up(gu, stream_, pdl);

        DecDownArgs dd;
        dd.hidden_q8 = bufs_.hidden_q8.as<block_q8k>();
        dd.n_ff = F;
        dd.ids = ro.ids;
        dd.weights = ro.weights;
        dd.k = K;
        dd.down = dn.buf.get();
        dd.type = dn.type;
        dd.n_out = E;
        dd.n_mat = dn.ne[2];
        dd.expert_out = buf(Act::expert_out);
        dd.moe_out = buf(Act::moe_out);
        dd.residual = buf(Act::ffn_inp);
        dd.x_out = buf(Act::x);
        // The next norm (the next layer's attn_norm, or output_norm after the last layer).
        if (dec_next_norm_)
            dd.next_norm_w = il + 1 < hp_.n_layer ? norm(w.layers[il + 1].attn_norm) : norm(w.output_norm);
        dd.next_eps = hp_.rms_eps;
        dd.next_norm_out = buf(Act::norm);
        dd.next_norm_q8 = norm_q8;
        dd.counter = dec_counters_.as<unsigned>() + hp_.n_head_kv + 1;
        dd.trace = trace(5);
        dec_down(dd, stream_, pdl);
    }
    if (!with_logits || l1 < hp_.n_layer) return;
    // LM head on the final norm's Q8K blocks (made by the last dec_down, or here); plain launches.
    if (!dec_next_norm_)
        rms_norm_q8k(buf(Act::x), norm(w.output_norm), buf(Act::norm), norm_q8, 1, E, hp_.rms_eps, stream_);
    const DevWeight& out = weight(w.output);
    if (dec_q8k_type(out.type)) {  // the decode matvec without a residual
        DecMatvecAddArgs lm;
        lm.in = buf(Act::norm);
        lm.in_q8 = norm_q8;
        lm.n = E;
        lm.mat.w = out.buf.get();
        lm.mat.type = out.type;
        lm.mat.n_rows = out.ne[1];
        lm.mat.out = dec_logits_.as<float>();
        dec_matvec_add(lm, stream_, false);
        return;
    }
    const MatvecArgs p = args_for(out, 1, dec_logits_.as<float>());
    if (matvec_uses_q8(out.type, mode_))
        matvec_q8k(p, norm_q8, stream_);
    else
        matvec_f32act(p, buf(Act::norm), stream_);
}

void CudaBackend::destroy_decode_graph(DecodeGraph& g) {
    for (cudaGraphExec_t e : g.execs)
        if (e && cudaGraphExecDestroy(e) != cudaSuccess) cudaGetLastError();
    g.execs.clear();
}

void CudaBackend::build_decode_graph(const Weights& w, bool with_logits, bool long_ctx) {
    DecodeGraph& dg = dec_graph_[with_logits][long_ctx];
    destroy_decode_graph(dg);
    cudaStream_t s = to_stream(stream_);
    try {
        for (size_t i = 0; i + 1 < dec_segments_.size(); ++i) {
            Q3_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
            try {
                enqueue_decode(w, with_logits, long_ctx, dec_segments_[i], dec_segments_[i + 1]);
            } catch (...) {
                cudaGraph_t g = nullptr;
                cudaStreamEndCapture(s, &g);
                if (g) cudaGraphDestroy(g);
                cudaGetLastError();
                throw;
            }
            cudaGraph_t g = nullptr;
            Q3_CUDA_CHECK(cudaStreamEndCapture(s, &g));
            cudaGraphExec_t exec = nullptr;
            const cudaError_t err = cudaGraphInstantiate(&exec, g, 0);
            cudaGraphDestroy(g);
            Q3_CUDA_CHECK(err);
            dg.execs.push_back(exec);
        }
    } catch (...) {
        destroy_decode_graph(dg);
        throw;
    }
    dg.act0 = bufs_.act[0].get();
}

bool CudaBackend::decode_step(const Weights& w, int32_t token, int pos, float* logits) {
    if (dec_state_ < 0) return false;
    use_device();
    if (dec_state_ == 0) {
        dec_reason_ = decode_unsupported(w);
        if (!dec_reason_.empty()) {
            dec_state_ = -1;
            return false;
        }
        dec_pdl_ = dec_device_has_pdl(device_);
        // A/B switches of the fused step's variants (all give the same bits): 0 turns one off.
        auto env_on = [](const char* name) {
            const char* e = std::getenv(name);
            return !(e && std::string(e) == "0");
        };
        if (!env_on("QWEN3MOE_CUDA_PDL")) dec_pdl_ = false;              // plain launches
        // The next norm in dec_down's last block: off by default (its serial tail sits on the
        // critical path; bench/NOTES.md, 2026-11-22 and 2026-12-01), "1" turns it on.
        const char* nn = std::getenv("QWEN3MOE_CUDA_DEC_NEXT_NORM");
        dec_next_norm_ = nn && std::string(nn) == "1";
        dec_attn_q8_ = env_on("QWEN3MOE_CUDA_DEC_ATTN_Q8");              // attn_out Q8K in attention
        // Blocks per KV head of the two-launch attention: one per key tile up to one wave.
        const int64_t n_tiles = (n_ctx_ + kAttnTile - 1) / kAttnTile;
        dec_split_ = (int)std::max<int64_t>(
            1, std::min<int64_t>(n_tiles, dec_attention_max_split(hp_.n_head_kv, mode_ == ActMode::q8)));
        if (const char* e = std::getenv("QWEN3MOE_CUDA_DECODE_SPLIT")) {  // test hook: blocks per KV head
            const int v = std::atoi(e);
            if (v >= 1) dec_split_ = v;
        }
        // The one-launch attention (a cluster per KV head, sm_90) unless clusters are off;
        // QWEN3MOE_CUDA_DECODE_CLUSTER=N forces N blocks per cluster (test hook; 0: two launches).
        dec_cluster_ = dec_clusters_enabled()
                           ? dec_attention_cluster_size(hp_.head_dim, hp_.n_head_kv, mode_ == ActMode::q8)
                           : 0;
        if (const char* e = std::getenv("QWEN3MOE_CUDA_DECODE_CLUSTER")) {
            const int v = std::atoi(e);
            if (v >= 0 && v <= 16) dec_cluster_ = v;
        }
        // The step's graphs: layer 0 alone, layers 1..7, the rest (each launched while the
        // previous one runs); QWEN3MOE_CUDA_DEC_SEGMENTS=1 makes it one graph.
        dec_segments_ = {0};
        const char* sg = std::getenv("QWEN3MOE_CUDA_DEC_SEGMENTS");
        if (!(sg && std::string(sg) == "1"))
            for (int b : {1, 8})
                if (b < hp_.n_layer) dec_segments_.push_back(b);
        dec_segments_.push_back(hp_.n_layer);
        // Crossover of the two attentions, from the two measured points (linear in pos): ~1470.
        dec_cluster_max_pos_ = 1536;
        if (const char* e = std::getenv("QWEN3MOE_CUDA_DEC_TRACE"); e && std::string(e) == "1") {
            dec_trace_ = DeviceBuffer((size_t)kDecTraceKernels * kDecTraceSlot * sizeof(unsigned long long));
            memset_device(dec_trace_.get(), 0, dec_trace_.size(), stream_);
        }
        if (const char* e = std::getenv("QWEN3MOE_CUDA_DECODE_CLUSTER_MAX_POS")) dec_cluster_max_pos_ = std::atoi(e);
        dec_state_ = 1;
    }
    if (pos < 0 || pos >= n_ctx_) throw std::logic_error("CudaBackend::decode_step: bad position");
    ensure_capacity(1);
    const bool want = logits != nullptr;
    // The cluster attention's blocks each take several 32-key runs and tiles in turn; at long
    // contexts the two-launch attention's wider grid is faster (H200: 17.2 vs 25.5 us per layer
    // near position 64, 62.6 vs 47.8 near 4160; bench/NOTES.md), so the step has two graphs.
    const bool long_ctx = dec_cluster_ > 0 && pos >= dec_cluster_max_pos_;
    DecodeGraph& dg = dec_graph_[want][long_ctx];
    if (dg.execs.empty() || dg.act0 != bufs_.act[0].get()) {
        try {
            build_decode_graph(w, want, long_ctx);
        } catch (const OutOfMemory&) {
            throw;
        } catch (const std::exception& e) {  // no graph on this device/driver: op-by-op from now on
            dec_state_ = -1;
            dec_reason_ = std::string("graph capture failed: ") + e.what();
            return false;
        }
    }
    const int32_t in[2] = {token, pos};
    memcpy_h2d(dec_in_.get(), in, sizeof(in), stream_);
    for (cudaGraphExec_t e : dg.execs) Q3_CUDA_CHECK(cudaGraphLaunch(e, to_stream(stream_)));
    T_ = 1;
    pos0_ = pos;
    for (bool& v : q8_valid_) v = false;  // the step rewrote the activation buffers
    if (want) {  // device -> pinned (DMA at full speed), then one host copy
        const size_t bytes = (size_t)hp_.n_vocab * sizeof(float);
        memcpy_d2h(dec_logits_host_.get(), dec_logits_.get(), bytes, stream_);
        std::memcpy(logits, dec_logits_host_.get(), bytes);
    }
    return true;
}

void CudaBackend::timer_start() {
    use_device();
    for (cudaEvent_t& e : timer_ev_)
        if (!e) Q3_CUDA_CHECK(cudaEventCreate(&e));
    Q3_CUDA_CHECK(cudaEventRecord(timer_ev_[0], to_stream(stream_)));
}

double CudaBackend::timer_stop() {
    use_device();
    if (!timer_ev_[0] || !timer_ev_[1]) throw std::logic_error("CudaBackend::timer_stop without timer_start");
    Q3_CUDA_CHECK(cudaEventRecord(timer_ev_[1], to_stream(stream_)));
    Q3_CUDA_CHECK(cudaEventSynchronize(timer_ev_[1]));
    float ms = 0.0f;
    Q3_CUDA_CHECK(cudaEventElapsedTime(&ms, timer_ev_[0], timer_ev_[1]));
    return ms;
}

std::vector<uint64_t> CudaBackend::decode_trace() {
    if (!dec_trace_.get()) return {};
    use_device();
    std::vector<uint64_t> t(dec_trace_.size() / sizeof(uint64_t));
    memcpy_d2h(t.data(), dec_trace_.get(), dec_trace_.size(), stream_);
    return t;
}

std::string CudaBackend::decode_path() const {
    if (dec_state_ > 0) {
        std::string s = "cuda-graph (fused kernels";
        if (dec_pdl_) s += ", programmatic dependent launch";
        const std::string two = "two launches of " + std::to_string(dec_split_) + " blocks per KV head";
        if (dec_cluster_ > 0)
            s += ", attention in clusters of " + std::to_string(dec_cluster_) + " below position " +
                 std::to_string(dec_cluster_max_pos_) + ", then in " + two;
        else
            s += ", attention in " + two;
        return s + ")";
    }
    if (dec_state_ < 0) return "op-by-op (" + dec_reason_ + ")";
    return "undecided (no decode step yet)";
}

}  // namespace

int parse_cuda_device(const std::string& device) {
    if (device == "cuda") return 0;
    if (device.rfind("cuda:", 0) == 0 && device.size() > 5 && device.size() <= 8 &&
        device.find_first_not_of("0123456789", 5) == std::string::npos)
        return std::stoi(device.substr(5));
    throw std::invalid_argument("device must be \"cpu\", \"cuda\" or \"cuda:N\", got \"" + device + "\"");
}

std::unique_ptr<Backend> make_cuda_backend(const HParams& hp, ActMode mode, int n_ctx, const RopeTable& rope,
                                           const Weights& w, const CudaBackendOptions& opt) {
    return std::make_unique<CudaBackend>(hp, mode, n_ctx, rope, w, opt);
}

}  // namespace qwen3moe::cuda
