// The qwen3moe model: hyperparameters and weights from a GGUF file (validated, weights are
// typed pointers into the mapping), the KV-cached forward with captures, and sampling steps.
//
// The forward is one loop over layers written against the Backend interface (model/backend.h);
// the backend is chosen at construction (make_backend), never by #ifdef in the forward.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gguf/gguf-reader.h"
#include "model/backend.h"
#include "model/qwen3moe-types.h"
#include "ops/rope.h"
#include "runtime/capture.h"
#include "runtime/sampler.h"

namespace qwen3moe {

class WeightCopy;

struct LayerWeights {
    NormWeight attn_norm;   // [n_embd]
    Tensor attn_q;          // [n_embd, n_head*hd]
    Tensor attn_k;          // [n_embd, n_head_kv*hd]
    Tensor attn_v;          // [n_embd, n_head_kv*hd]
    NormWeight attn_q_norm; // [hd]
    NormWeight attn_k_norm; // [hd]
    Tensor attn_output;     // [n_head*hd, n_embd]
    NormWeight ffn_norm;    // [n_embd]
    Tensor ffn_gate_inp;    // [n_embd, n_expert] (router)
    Tensor ffn_gate_exps;   // [n_embd, n_ff_exp, n_expert]
    Tensor ffn_up_exps;     // [n_embd, n_ff_exp, n_expert]
    Tensor ffn_down_exps;   // [n_ff_exp, n_embd, n_expert]
};

struct Weights {
    Tensor token_embd;              // [n_embd, n_vocab]
    NormWeight output_norm;         // [n_embd]
    Tensor output;                  // [n_embd, n_vocab]; token_embd when the file has none
    bool tied_output = false;       // output absent -> token_embd used
    std::vector<LayerWeights> layers;  // [n_layer]
    std::vector<const Tensor*> all;    // every matrix by id (for device copies)
    size_t mapped_bytes = 0;        // bytes of all tensors used
};

// Read and validate qwen3moe.* metadata (GGUFError naming the key).
HParams read_hparams(const GGUFFile& f);
// Find and check every tensor (presence, shape, type): GGUFError for a missing tensor or a bad
// shape, UnsupportedType for a type qwen3moe cannot compute with (or, in q8 mode, a quantised
// tensor whose rows are not a multiple of 256).
Weights load_weights(const GGUFFile& f, const HParams& hp, ActMode mode);

enum class LogitsMode { last, all, none };
LogitsMode logits_mode_from_name(const std::string& s);  // invalid_argument otherwise

struct ModelOptions {
    int n_ctx = 4096;              // KV positions
    ActMode mode = ActMode::q8;    // activations
    int threads = 0;               // 0 = hardware threads
    std::string device = "cpu";    // "cpu", or a registered device backend: "cuda", "cuda:N"
    size_t max_vram = 0;           // device backends: bytes the model may use at most (0 = free memory)
    // Device backends: weight upload progress (bytes done, bytes total); may be empty.
    std::function<void(size_t, size_t)> progress;
};

// ---- device backends -------------------------------------------------------------------------
// Backends other than "cpu" live in libraries the CPU core does not link against; they register
// a factory at run time (the CUDA backend registers "cuda" when the Python module of a CUDA
// build is initialised). Device "<name>" or "<name>:<index>" selects the factory of <name>.
using BackendFactory = std::unique_ptr<Backend> (*)(const HParams& hp, const ModelOptions& opt,
                                                    const RopeTable& rope, const Weights& w);
void register_backend(const std::string& name, BackendFactory factory);

// Polled between the ops of a forward (after attention and after the experts of every layer,
// and before each batch); returning true stops the call: the model is
// restored as before it (n_past unchanged; cache rows past n_past are never read) and
// qwen3moe::Cancelled is thrown. Called on the computing thread.
using CancelCheck = std::function<bool()>;

struct ForwardResult {
    std::vector<float> logits;  // [logits_rows][n_vocab]
    int64_t logits_rows = 0;    // 0 (none), 1 (last) or T (all)
    CaptureSink captures;       // requested (stage, layer) buffers, T rows each
};

class Qwen3Moe {
public:
    Qwen3Moe(const std::string& path, const ModelOptions& opt);
    ~Qwen3Moe();

    const HParams& hparams() const { return hp_; }
    const ModelOptions& options() const { return opt_; }
    const Weights& weights() const { return w_; }
    const GGUFFile& file() const { return *file_; }
    Backend& backend() { return *backend_; }
    CaptureDims capture_dims() const;
    int n_past() const { return n_past_; }
    int n_ctx() const { return opt_.n_ctx; }
    int threads() const { return threads_; }

    // Run tokens[0..T) at positions n_past .. n_past+T-1 (T >= 1, n_past + T <= n_ctx) and
    // append them to the KV cache. Throws before touching any state on bad input:
    // invalid_argument (empty, token id outside [0, n_vocab), n_past + T > n_ctx). On any
    // failure the model is as before the call.
    // `cancel` (may be null) is polled between ops (see CancelCheck).
    void forward(const int32_t* tokens, int T, const CaptureSpec& spec, LogitsMode mode, ForwardResult& out,
                 const CancelCheck* cancel = nullptr);
    // Forward with logits of the last row into an internal buffer, then one canonical sample.
    // (No allocation for T = 1 after the first call.)
    int32_t step(const int32_t* tokens, int T, const SamplerParams& sp, uint64_t counter,
                 const CancelCheck* cancel = nullptr);
    void reset() { n_past_ = 0; }
    // Not thread-safe by itself: callers on several threads hold this lock around forward, step
    // and reset (the Python bindings do, with the GIL released while they wait).
    std::mutex& call_mutex() { return call_mutex_; }

private:
    void check_tokens(const int32_t* tokens, int T) const;
    // One batch (T <= kMaxBatch) at position n_past_; captures go to rows row_off.. of `cap`.
    void run_batch(const int32_t* tokens, int T, const CaptureSpec& spec, CaptureSink* cap, int64_t row_off,
                   int logit_r0, int logit_n, float* logits_dst, float* logits_cap_dst, const CancelCheck* cancel);

    ModelOptions opt_;                 // load options
    std::unique_ptr<GGUFFile> file_;   // the mapping (weights point into it)
    std::unique_ptr<WeightCopy> weight_copy_;  // CPU: private copy the weights point into (or none)
    HParams hp_;                       // hyperparameters
    Weights w_;                        // tensor descriptions
    RopeTable rope_;                   // [n_ctx] cos/sin
    std::unique_ptr<Backend> backend_; // compute
    int threads_ = 1;                  // thread count in use
    int n_past_ = 0;                   // tokens in the KV cache
    std::vector<float> step_logits_;   // [n_vocab] for step()
    Sampler sampler_;                  // scratch for step()
    std::mutex call_mutex_;            // serialises callers on several threads (call_mutex())
};

// Prefill batches: a prompt is run in chunks of at most this many tokens (bounded scratch);
// batch invariance makes the chunking invisible in the results.
constexpr int kMaxBatch = 512;

}  // namespace qwen3moe
