// qwen3moe: metadata and tensor validation, and the forward (one loop over layers against the
// Backend interface; stage labels match the capture vocabulary).
#include "model/qwen3moe.h"

#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "model/cpu-backend.h"
#include "model/weight-copy.h"
#include "quant/quant.h"
#include "runtime/cpu-tuning.h"
#include "runtime/errors.h"
#include "runtime/op-profile.h"

namespace qwen3moe {

namespace {

const char* const kArch = "qwen3moe";
constexpr int64_t kMaxDim = 1 << 20;  // sanity bound on every count read from metadata

int read_count(const GGUFFile& f, const std::string& key, int64_t max = kMaxDim) {
    const uint64_t v = f.get_u64(key);  // GGUFError when absent or not an integer
    if (v == 0 || v > (uint64_t)max)
        throw GGUFError("metadata key '" + key + "' = " + std::to_string(v) + " is out of range (must be 1.." +
                        std::to_string(max) + ")");
    return (int)v;
}

std::string shape_str(const int64_t* ne, int n) {
    std::string s = "[";
    for (int i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}

const GGUFTensorInfo& need_tensor(const GGUFFile& f, const std::string& name) {
    const GGUFTensorInfo* t = f.find_tensor(name);
    if (!t) throw GGUFError("tensor '" + name + "' is missing (qwen3moe needs it)");
    return *t;
}

void check_type(const GGUFTensorInfo& t) {
    if (!ggml_type_supported(t.type))
        throw UnsupportedType("tensor '" + t.name + "' has type " + ggml_type_name(t.type) +
                              ", which qwen3moe cannot compute with");
}

void check_shape(const GGUFTensorInfo& t, std::vector<int64_t> want) {
    std::vector<int64_t> got(t.ne, t.ne + 4);
    want.resize(4, 1);
    if (got != want) {
        int n = 4;
        while (n > 1 && want[n - 1] == 1) --n;
        int m = (int)t.n_dims;
        if (m < 1 || m > 4) m = 4;
        throw GGUFError("tensor '" + t.name + "' has shape " + shape_str(t.ne, m) + ", expected " +
                        shape_str(want.data(), n));
    }
}

Tensor make_tensor(const GGUFTensorInfo& t, ActMode mode) {
    check_type(t);
    const GGMLTypeTraits* tr = ggml_type_traits(t.type);
    if (t.ne[0] % tr->block_size != 0)
        throw GGUFError("tensor '" + t.name + "': row length " + std::to_string(t.ne[0]) +
                        " is not a multiple of the " + tr->name + " block size");
    if (mode == ActMode::q8 && !is_float_type(t.type) && (t.ne[0] % 256 != 0 || !type_has_q8k_dot(t.type)))
        throw UnsupportedType("tensor '" + t.name + "' has type " + ggml_type_name(t.type) + " with rows of " +
                              std::to_string(t.ne[0]) +
                              " values, which qwen3moe cannot compute with in activations=\"q8\" mode "
                              "(needs a multiple of 256; use activations=\"f32\")");
    Tensor x;
    x.name = t.name;
    x.type = t.type;
    for (int i = 0; i < 4; ++i) x.ne[i] = t.ne[i];
    x.data = t.data;
    x.row_bytes = (size_t)(t.ne[0] / tr->block_size * tr->type_size);
    if ((uint64_t)x.row_bytes * (uint64_t)(t.ne[1] * t.ne[2] * t.ne[3]) != t.nbytes)
        throw GGUFError("tensor '" + t.name + "': byte size does not match its type and shape");
    return x;
}

Tensor matrix(const GGUFFile& f, const std::string& name, std::vector<int64_t> shape, ActMode mode) {
    const GGUFTensorInfo& t = need_tensor(f, name);
    check_type(t);
    check_shape(t, shape);
    return make_tensor(t, mode);
}

NormWeight norm(const GGUFFile& f, const std::string& name, int64_t n) {
    const GGUFTensorInfo& t = need_tensor(f, name);
    check_type(t);
    check_shape(t, {n});
    const GGMLTypeTraits* tr = ggml_type_traits(t.type);
    if (n % tr->block_size != 0)
        throw GGUFError("tensor '" + name + "': length " + std::to_string(n) + " is not a multiple of the " +
                        tr->name + " block size");
    NormWeight w;
    w.name = name;
    w.w.resize(n);
    dequantize_row(t.type, t.data, w.w.data(), n);
    return w;
}

}  // namespace

namespace {
std::mutex g_backends_mutex;
std::map<std::string, BackendFactory>& backends() {
    static std::map<std::string, BackendFactory> m;
    return m;
}
BackendFactory find_backend(const std::string& name) {
    std::lock_guard<std::mutex> lock(g_backends_mutex);
    auto it = backends().find(name);
    return it == backends().end() ? nullptr : it->second;
}
}  // namespace

void register_backend(const std::string& name, BackendFactory factory) {
    std::lock_guard<std::mutex> lock(g_backends_mutex);
    backends()[name] = factory;
}

HParams read_hparams(const GGUFFile& f) {
    if (const GGUFValue* a = f.find("general.architecture")) {
        if (a->type != GGUFType::STRING || a->s != kArch)
            throw GGUFError("metadata key 'general.architecture' is '" + (a->type == GGUFType::STRING ? a->s : "?") +
                            "', qwen3moe needs 'qwen3moe'");
    } else {
        throw GGUFError("metadata key 'general.architecture' is missing");
    }
    const std::string p = std::string(kArch) + ".";
    HParams hp;
    hp.n_layer = read_count(f, p + "block_count", 4096);
    hp.n_embd = read_count(f, p + "embedding_length");
    hp.n_head = read_count(f, p + "attention.head_count", 65536);
    hp.n_head_kv = read_count(f, p + "attention.head_count_kv", 65536);
    hp.n_expert = read_count(f, p + "expert_count", 65536);
    hp.n_expert_used = read_count(f, p + "expert_used_count", 65536);
    hp.n_ff_exp = read_count(f, p + "expert_feed_forward_length");
    if (f.has(p + "attention.key_length")) {
        hp.head_dim = read_count(f, p + "attention.key_length", 65536);
    } else {
        if (hp.n_embd % hp.n_head != 0)
            throw GGUFError("metadata key '" + p + "attention.key_length' is missing and embedding_length is not a "
                            "multiple of attention.head_count");
        hp.head_dim = hp.n_embd / hp.n_head;
    }
    if (f.has(p + "attention.value_length")) {
        const int vl = read_count(f, p + "attention.value_length", 65536);
        if (vl != hp.head_dim)
            throw GGUFError("metadata key '" + p + "attention.value_length' = " + std::to_string(vl) +
                            " differs from attention.key_length = " + std::to_string(hp.head_dim) +
                            " (qwen3moe needs them equal)");
    }
    hp.n_ctx_train = f.has(p + "context_length") ? (int)f.get_u32(p + "context_length") : 0;
    if (hp.n_head % hp.n_head_kv != 0)
        throw GGUFError("metadata key '" + p + "attention.head_count_kv' = " + std::to_string(hp.n_head_kv) +
                        " does not divide attention.head_count = " + std::to_string(hp.n_head));
    if (hp.n_expert_used > hp.n_expert)
        throw GGUFError("metadata key '" + p + "expert_used_count' = " + std::to_string(hp.n_expert_used) +
                        " exceeds expert_count = " + std::to_string(hp.n_expert));
    if (hp.head_dim % 2 != 0)
        throw GGUFError("metadata key '" + p + "attention.key_length' = " + std::to_string(hp.head_dim) +
                        " is odd (RoPE needs an even head_dim)");
    if ((int64_t)hp.n_head * hp.head_dim > kMaxDim)
        throw GGUFError("metadata keys '" + p + "attention.head_count' x key_length are too large");
    hp.rope_freq_base = f.has(p + "rope.freq_base") ? f.get_f32(p + "rope.freq_base") : 10000.0f;
    if (!(std::isfinite(hp.rope_freq_base) && hp.rope_freq_base > 0.0f))
        throw GGUFError("metadata key '" + p + "rope.freq_base' = " + std::to_string(hp.rope_freq_base) +
                        " must be a positive finite number");
    hp.rms_eps = f.get_f32(p + "attention.layer_norm_rms_epsilon");
    if (!(std::isfinite(hp.rms_eps) && hp.rms_eps > 0.0f))
        throw GGUFError("metadata key '" + p + "attention.layer_norm_rms_epsilon' = " + std::to_string(hp.rms_eps) +
                        " must be a positive finite number");
    const std::string embd_name = "token_embd.weight";
    const GGUFTensorInfo& te = need_tensor(f, embd_name);
    if (te.ne[1] <= 0 || te.ne[1] > std::numeric_limits<int32_t>::max())
        throw GGUFError("tensor 'token_embd.weight' has a bad vocabulary size");
    hp.n_vocab = (int)te.ne[1];
    return hp;
}

Weights load_weights(const GGUFFile& f, const HParams& hp, ActMode mode) {
    const int64_t E = hp.n_embd, Q = hp.q_dim(), KV = hp.kv_dim(), V = hp.n_vocab;
    const int64_t NE = hp.n_expert, F = hp.n_ff_exp, HD = hp.head_dim;
    Weights w;
    w.token_embd = matrix(f, "token_embd.weight", {E, V}, mode);
    w.output_norm = norm(f, "output_norm.weight", E);
    if (f.find_tensor("output.weight")) {
        w.output = matrix(f, "output.weight", {E, V}, mode);
    } else {
        w.output = w.token_embd;
        w.tied_output = true;
    }
    w.layers.resize(hp.n_layer);
    for (int il = 0; il < hp.n_layer; ++il) {
        const std::string b = "blk." + std::to_string(il) + ".";
        LayerWeights& L = w.layers[il];
        L.attn_norm = norm(f, b + "attn_norm.weight", E);
        L.attn_q = matrix(f, b + "attn_q.weight", {E, Q}, mode);
        L.attn_k = matrix(f, b + "attn_k.weight", {E, KV}, mode);
        L.attn_v = matrix(f, b + "attn_v.weight", {E, KV}, mode);
        L.attn_q_norm = norm(f, b + "attn_q_norm.weight", HD);
        L.attn_k_norm = norm(f, b + "attn_k_norm.weight", HD);
        L.attn_output = matrix(f, b + "attn_output.weight", {Q, E}, mode);
        L.ffn_norm = norm(f, b + "ffn_norm.weight", E);
        L.ffn_gate_inp = matrix(f, b + "ffn_gate_inp.weight", {E, NE}, mode);
        L.ffn_gate_exps = matrix(f, b + "ffn_gate_exps.weight", {E, F, NE}, mode);
        L.ffn_up_exps = matrix(f, b + "ffn_up_exps.weight", {E, F, NE}, mode);
        L.ffn_down_exps = matrix(f, b + "ffn_down_exps.weight", {F, E, NE}, mode);
    }
    // Embedding rows are dequantised directly; the embedding width is an activation width.
    return w;
}

LogitsMode logits_mode_from_name(const std::string& s) {
    if (s == "last") return LogitsMode::last;
    if (s == "all") return LogitsMode::all;
    if (s == "none") return LogitsMode::none;
    throw std::invalid_argument("logits must be \"last\", \"all\" or \"none\", got \"" + s + "\"");
}

Qwen3Moe::Qwen3Moe(const std::string& path, const ModelOptions& opt) : opt_(opt) {
    if (opt.n_ctx < 1 || opt.n_ctx > (1 << 20))
        throw std::invalid_argument("n_ctx must be in 1..1048576, got " + std::to_string(opt.n_ctx));
    if (opt.threads < 0) throw std::invalid_argument("threads must be >= 1 (or 0/None for all hardware threads)");
    BackendFactory device_factory = nullptr;  // nullptr: the CPU backend
    if (opt.device != "cpu") {
        const std::string name = opt.device.substr(0, opt.device.find(':'));
        device_factory = find_backend(name);
        if (!device_factory) {
            if (name == "cuda")
                throw std::runtime_error("device=\"cuda\": CUDA backend not built/available in this qwen3moe build");
            throw std::invalid_argument("device must be \"cpu\" or \"cuda\", got \"" + opt.device + "\"");
        }
    }
    file_ = GGUFFile::open(path);
    hp_ = read_hparams(*file_);
    w_ = load_weights(*file_, hp_, opt.mode);
    // ids (stable per file) and the list of every distinct weight for device copies
    auto reg = [&](Tensor& t) {
        t.id = (int)w_.all.size();
        w_.all.push_back(&t);
        w_.mapped_bytes += t.row_bytes * (size_t)(t.ne[1] * t.ne[2] * t.ne[3]);
    };
    reg(w_.token_embd);
    if (w_.tied_output)
        w_.output.id = w_.token_embd.id;
    else
        reg(w_.output);
    int nid = 0;
    for (LayerWeights& L : w_.layers) {
        for (Tensor* t : {&L.attn_q, &L.attn_k, &L.attn_v, &L.attn_output, &L.ffn_gate_inp, &L.ffn_gate_exps,
                          &L.ffn_up_exps, &L.ffn_down_exps})
            reg(*t);
        for (NormWeight* n : {&L.attn_norm, &L.attn_q_norm, &L.attn_k_norm, &L.ffn_norm}) n->id = nid++;
    }
    w_.output_norm.id = nid++;
    rope_ = build_rope_table(opt.n_ctx, hp_.head_dim, (double)hp_.rope_freq_base);
    threads_ = opt.threads > 0 ? opt.threads : (int)std::max(1u, std::thread::hardware_concurrency());
    if (!device_factory && cpu_tuning::weights_copy()) {
        weight_copy_ = std::make_unique<WeightCopy>(w_.all, threads_);
        // w_ owns the tensors (w_.all only lists them read-only)
        for (size_t i = 0; i < w_.all.size(); ++i) const_cast<Tensor*>(w_.all[i])->data = weight_copy_->data(i);
        if (w_.tied_output) w_.output.data = w_.token_embd.data;
    }
    if (device_factory)
        backend_ = device_factory(hp_, opt_, rope_, w_);
    else
        backend_ = std::make_unique<CpuBackend>(hp_, opt.mode, opt.n_ctx, threads_, rope_);
    opt_.progress = nullptr;  // the load is over; keep no reference to the caller's callback
    step_logits_.assign(hp_.n_vocab, 0.0f);
}

Qwen3Moe::~Qwen3Moe() = default;

CaptureDims Qwen3Moe::capture_dims() const {
    CaptureDims d;
    d.n_embd = hp_.n_embd;
    d.q_dim = hp_.q_dim();
    d.kv_dim = hp_.kv_dim();
    d.n_expert = hp_.n_expert;
    d.n_used = hp_.n_expert_used;
    d.n_ff_exp = hp_.n_ff_exp;
    d.n_vocab = hp_.n_vocab;
    d.n_layer = hp_.n_layer;
    return d;
}

void Qwen3Moe::check_tokens(const int32_t* tokens, int T) const {
    if (T <= 0) throw std::invalid_argument("empty input: at least one token is needed");
    for (int i = 0; i < T; ++i)
        if (tokens[i] < 0 || tokens[i] >= hp_.n_vocab)
            throw std::invalid_argument("token id " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                                        " is out of range: the vocabulary size is " + std::to_string(hp_.n_vocab) +
                                        " (valid ids 0.." + std::to_string(hp_.n_vocab - 1) + ")");
    if ((int64_t)n_past_ + T > opt_.n_ctx)
        throw std::invalid_argument("context overflow: n_past " + std::to_string(n_past_) + " + " + std::to_string(T) +
                                    " new tokens exceeds n_ctx = " + std::to_string(opt_.n_ctx) +
                                    " (call reset() or load with a larger n_ctx)");
}

// The forward of one batch. Numerics rules (ARCHITECTURE.md section 2) at this level:
//  * q8 mode quantises exactly these inputs, once per token each: attn_norm output (q, k, v),
//    attention output (attn_output), ffn_norm output (expert gate/up; the F32 router reads the
//    f32 ffn_norm output by the matvec rule), SwiGLU output (down; inside moe_experts),
//    final_norm output (LM head). The embedding is the dequantised token_embd row.
//  * residuals: ffn_inp = x + attn_proj, layer_out = ffn_inp + moe (one float add each).
//  * final: final_norm = RMSNorm(x, output_norm); logits = matvec(output, or token_embd when the
//    file has no output tensor).
//  * batch invariance: every op computes a token's values from that token's inputs (and the KV
//    cache rows before it) only, so forward(prompt) == token-by-token decode, bit for bit.
void Qwen3Moe::run_batch(const int32_t* tokens, int T, const CaptureSpec& spec, CaptureSink* sink, int64_t row_off,
                         int logit_r0, int logit_n, float* logits_dst, float* logits_cap_dst,
                         const CancelCheck* cancel) {
    Backend& be = *backend_;
    auto poll = [&] {
        if (cancel && *cancel && (*cancel)()) throw Cancelled("forward cancelled");
    };
    poll();
    auto cap = [&](Stage s, int il, Act a) {
        if (!sink || !spec.wants(s, il)) return;
        CaptureBuffer* b = sink->find(s, il);
        be.copy_to_host(a, Rows{0, T}, b->row(row_off));
    };
    // Decode fast path: one step of one token with no captures (and the logits of that token
    // or none) may run fused; the backend returns false when it has no such path.
    if (T == 1 && (!sink || spec.empty()) && !logits_cap_dst && (logit_n == 0 || (logit_n == 1 && logit_r0 == 0)) &&
        be.decode_step(w_, tokens[0], n_past_, logit_n ? logits_dst : nullptr))
        return;
    be.begin_batch(tokens, T, n_past_);
    using op_profile::OpScope;
    const bool prof = op_profile::enabled();  // bytes are only worked out when profiling
    auto wbytes = [&](const Tensor& t) -> int64_t {
        return prof ? (int64_t)t.row_bytes * t.ne[1] * t.ne[2] * t.ne[3] : 0;
    };
    { OpScope s(ProfOp::embed); be.embed(w_.token_embd, Act::x); }
    cap(Stage::embed, -1, Act::x);
    for (int il = 0; il < hp_.n_layer; ++il) {
        const LayerWeights& L = w_.layers[il];
        // attention block
        { OpScope s(ProfOp::attn_norm); be.rms_norm(Act::x, L.attn_norm, Act::norm); }
        cap(Stage::attn_norm, il, Act::norm);
        { OpScope s(ProfOp::attn_quantize); be.quantize(Act::norm); }  // once, read by q, k and v
        {
            OpScope s(ProfOp::qkv, wbytes(L.attn_q) + wbytes(L.attn_k) + wbytes(L.attn_v));
            be.matvec_qkv(L.attn_q, L.attn_k, L.attn_v, Act::norm);
        }
        cap(Stage::q, il, Act::q);
        cap(Stage::k, il, Act::k);
        cap(Stage::v, il, Act::v);
        { OpScope s(ProfOp::qk_norm_rope); be.qk_norm_rope_kv_append(il, L.attn_q_norm, L.attn_k_norm); }
        cap(Stage::q_normed, il, Act::q_normed);                       cap(Stage::k_normed, il, Act::k_normed);
        cap(Stage::q_rope, il, Act::q_rope);                           cap(Stage::k_rope, il, Act::k_rope);
        { OpScope s(ProfOp::attention); be.attention(il); }
        cap(Stage::attn_out, il, Act::attn_out);
        poll();  // also after the two long ops of a layer: a long prefill stops within one op
        { OpScope s(ProfOp::o_quantize); be.quantize(Act::attn_out); }
        { OpScope s(ProfOp::o_proj, wbytes(L.attn_output)); be.matvec(L.attn_output, Act::attn_out, Act::attn_proj); }
        cap(Stage::attn_proj, il, Act::attn_proj);
        { OpScope s(ProfOp::residual_add); be.add(Act::x, Act::attn_proj, Act::ffn_inp); }
        cap(Stage::ffn_inp, il, Act::ffn_inp);
        // MoE block
        { OpScope s(ProfOp::ffn_norm); be.rms_norm(Act::ffn_inp, L.ffn_norm, Act::norm); }
        cap(Stage::ffn_norm, il, Act::norm);
        // once, read by every expert's gate and up (and a quantised router)
        { OpScope s(ProfOp::ffn_quantize); be.quantize(Act::norm); }
        { OpScope s(ProfOp::router, wbytes(L.ffn_gate_inp)); be.matvec(L.ffn_gate_inp, Act::norm, Act::router_logits); }
        cap(Stage::moe_router_logits, il, Act::router_logits);
        { OpScope s(ProfOp::router_topk); be.router_topk(); }
        cap(Stage::moe_router_probs, il, Act::router_probs);           cap(Stage::moe_router_indices, il, Act::router_indices);
        cap(Stage::moe_router_weights, il, Act::router_weights);
        {
            OpScope s(ProfOp::experts);  // bytes: reported by the backend's child scopes
            be.moe_experts(L.ffn_gate_exps, L.ffn_up_exps, L.ffn_down_exps, Act::norm);
        }
        cap(Stage::moe_expert_gate, il, Act::expert_gate);             cap(Stage::moe_expert_up, il, Act::expert_up);
        cap(Stage::moe_expert_swiglu, il, Act::expert_swiglu);         cap(Stage::moe_expert_out, il, Act::expert_out);
        cap(Stage::moe_ffn_out, il, Act::moe_out);
        poll();
        { OpScope s(ProfOp::residual_add); be.add(Act::ffn_inp, Act::moe_out, Act::x); }
        cap(Stage::layer_out, il, Act::x);
    }
    // output
    const bool want_final = sink && spec.wants(Stage::final_norm);
    if (!want_final && logit_n == 0 && !logits_cap_dst) return;
    { OpScope s(ProfOp::final_norm); be.rms_norm(Act::x, w_.output_norm, Act::norm); }
    cap(Stage::final_norm, -1, Act::norm);
    if (logit_n == 0 && !logits_cap_dst) return;
    { OpScope s(ProfOp::lm_quantize); be.quantize(Act::norm); }
    const int64_t V = hp_.n_vocab;
    if (logits_cap_dst) {  // every row captured; the result rows are a subset
        { OpScope s(ProfOp::lm_head, wbytes(w_.output)); be.lm_head(w_.output, Act::norm, Rows{0, T}); }
        be.copy_to_host(Act::logits, Rows{0, T}, logits_cap_dst + row_off * V);
        if (logit_n) be.copy_to_host(Act::logits, Rows{logit_r0, logit_n}, logits_dst);
    } else {
        { OpScope s(ProfOp::lm_head, wbytes(w_.output)); be.lm_head(w_.output, Act::norm, Rows{logit_r0, logit_n}); }
        be.copy_to_host(Act::logits, Rows{0, logit_n}, logits_dst);
    }
}

void Qwen3Moe::forward(const int32_t* tokens, int T, const CaptureSpec& spec, LogitsMode mode, ForwardResult& out,
                       const CancelCheck* cancel) {
    check_tokens(tokens, T);
    const int64_t V = hp_.n_vocab;
    out.logits_rows = mode == LogitsMode::all ? T : mode == LogitsMode::last ? 1 : 0;
    out.logits.assign((size_t)(out.logits_rows * V), 0.0f);
    out.captures.prepare(spec, capture_dims(), T);
    CaptureBuffer* lcap = out.captures.find(Stage::logits, -1);
    const int saved = n_past_;
    try {
        for (int c0 = 0; c0 < T; c0 += kMaxBatch) {
            const int n = std::min(kMaxBatch, T - c0);
            int lr0 = 0, ln = 0;
            float* ldst = nullptr;
            if (mode == LogitsMode::all) {
                ln = n;
                ldst = out.logits.data() + (int64_t)c0 * V;
            } else if (mode == LogitsMode::last && c0 + n == T) {
                lr0 = n - 1;
                ln = 1;
                ldst = out.logits.data();
            }
            run_batch(tokens + c0, n, spec, &out.captures, c0, lr0, ln, ldst, lcap ? lcap->f.data() : nullptr, cancel);
            n_past_ += n;
        }
    } catch (...) {
        n_past_ = saved;
        throw;
    }
}

int32_t Qwen3Moe::step(const int32_t* tokens, int T, const SamplerParams& sp, uint64_t counter,
                       const CancelCheck* cancel) {
    validate_sampler_params(sp);
    check_tokens(tokens, T);
    static const CaptureSpec kNone;
    const int saved = n_past_;
    try {
        for (int c0 = 0; c0 < T; c0 += kMaxBatch) {
            const int n = std::min(kMaxBatch, T - c0);
            const bool last = c0 + n == T;
            run_batch(tokens + c0, n, kNone, nullptr, 0, last ? n - 1 : 0, last ? 1 : 0,
                      last ? step_logits_.data() : nullptr, nullptr, cancel);
            n_past_ += n;
        }
    } catch (...) {
        n_past_ = saved;
        throw;
    }
    return sampler_.sample(step_logits_.data(), hp_.n_vocab, sp, counter);
}

}  // namespace qwen3moe
