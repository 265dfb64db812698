// CPU backend. Every op computes each output element from the canonical per-element
// definition in cpp/ops (so thread count, batch size and chunking never change a bit);
// parallelism is over rows of a weight, tokens, or (token, head) pairs.
#include "model/cpu-backend.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <stdexcept>

#include "ops/attention.h"
#include "ops/canon.h"
#include "ops/embed.h"
#include "ops/moe-router.h"
#include "ops/rms-norm.h"
#include "ops/rope.h"
#include "ops/swiglu.h"
#include "quant/quant.h"
#include "runtime/cpu-tuning.h"
#include "runtime/op-profile.h"

namespace qwen3moe {

namespace {
constexpr int kParallelRouterTokens = 16;      // batches at least this long route tokens in parallel
constexpr int64_t kParallelAddValues = 1 << 16;  // residual adds at least this long run in parallel
}  // namespace

CpuBackend::CpuBackend(const HParams& hp, ActMode mode, int n_ctx, int n_threads, const RopeTable& rope)
    : hp_(hp), mode_(mode), n_ctx_(n_ctx), pool_(n_threads), rope_(rope),
      kv_(hp.n_layer, n_ctx, hp.kv_dim(), mode == ActMode::q8),
      kq_scale_(attention_kq_scale(hp.head_dim)) {
    const int64_t E = hp.n_embd, Q = hp.q_dim(), KV = hp.kv_dim(), K = hp.n_expert_used;
    const int64_t widths[(int)Act::count] = {
        E, E, Q, KV, KV, Q, KV, Q, KV, Q, E, E,        // x .. ffn_inp
        hp.n_expert, hp.n_expert, K, K,                // router
        K * hp.n_ff_exp, K * hp.n_ff_exp, K * hp.n_ff_exp, K * E, E,  // experts, moe_out
        hp.n_vocab,                                    // logits
    };
    for (int i = 0; i < (int)Act::count; ++i) width_[i] = widths[i];
    int64_t mx = E;
    if (Q > mx) mx = Q;
    if (hp.n_ff_exp > mx) mx = hp.n_ff_exp;
    scratch_stride_ = mx;
    scratch_.assign((size_t)pool_.size() * mx, 0.0f);
    attn_scratch_.assign((size_t)pool_.size() * (n_ctx + 2 * (int64_t)hp.head_dim), 0.0f);
    grp_count_.assign(hp.n_expert, 0);
    grp_off_.assign(hp.n_expert + 1, 0);
    grp_active_.assign(hp.n_expert, 0);
}

size_t CpuBackend::scratch_bytes() const {
    size_t b = (scratch_.size() + attn_scratch_.size()) * 4;
    for (int i = 0; i < (int)Act::count; ++i) b += bufs_[i].size() * 4 + q8_[i].size() * sizeof(block_q8k);
    b += (g_in_.size() + g_gate_.size() + g_up_.size() + g_act_.size() + g_down_.size()) * 4;
    b += indices_.size() * 4;
    b += (g_in_q8_.size() + g_act_q8_.size()) * sizeof(block_q8k);
    return b;
}

void CpuBackend::ensure_capacity(int T) {
    if (T <= cap_) return;
    const int64_t cap = T;
    const int64_t K = hp_.n_expert_used, E = hp_.n_embd, F = hp_.n_ff_exp;
    tokens_.assign(cap, 0);
    indices_.assign((size_t)(cap * K), 0);
    for (int i = 0; i < (int)Act::count; ++i) {
        // logits rows are allocated by lm_head on demand (vocab-wide rows are large)
        if (i == (int)Act::logits || i == (int)Act::router_indices) continue;
        // the per-entry expert captures are gathered from the grouped buffers (copy_to_host)
        if (i == (int)Act::expert_gate || i == (int)Act::expert_up || i == (int)Act::expert_swiglu ||
            i == (int)Act::expert_out)
            continue;
        bufs_[i].assign((size_t)(cap * width_[i]), 0.0f);
    }
    if (mode_ == ActMode::q8) {
        for (Act a : {Act::norm, Act::attn_out})
            if (width(a) % 256 == 0) q8_[(int)a].assign((size_t)(cap * width(a) / 256), block_q8k{});
        if (E % 256 == 0) g_in_q8_.assign((size_t)(cap * K * E / 256), block_q8k{});
        if (F % 256 == 0) g_act_q8_.assign((size_t)(cap * K * F / 256), block_q8k{});
    }
    grp_entry_.assign((size_t)(cap * K), 0);
    grp_pos_.assign((size_t)(cap * K), 0);
    g_in_.assign((size_t)(cap * K * E), 0.0f);
    g_gate_.assign((size_t)(cap * K * F), 0.0f);
    g_up_.assign((size_t)(cap * K * F), 0.0f);
    g_act_.assign((size_t)(cap * K * F), 0.0f);
    g_down_.assign((size_t)(cap * K * E), 0.0f);
    cap_ = T;
}

void CpuBackend::begin_batch(const int32_t* tokens, int T, int pos0) {
    if (T <= 0 || pos0 < 0 || pos0 + T > n_ctx_) throw std::logic_error("CpuBackend::begin_batch: bad batch");
    ensure_capacity(T);
    std::memcpy(tokens_.data(), tokens, sizeof(int32_t) * T);
    T_ = T;
    pos0_ = pos0;
    for (bool& v : q8_valid_) v = false;
    grouped_valid_ = false;
    q_norm_pending_ = nullptr;
    // pool partition for this batch's regions (scheduling only: any partition gives the same bits)
    pool_.set_chunks_per_thread(T > 1 ? cpu_tuning::chunks() : cpu_tuning::chunks_decode());
    // software prefetch of weight rows: decode streams weights (prefetch), prefill reuses each
    // row across tokens and is arithmetic-bound (prefetch_prefill)
    prefetch_ = T > 1 ? cpu_tuning::prefetch_prefill_bytes() : cpu_tuning::prefetch_bytes();
}

void CpuBackend::embed(const Tensor& token_embd, Act out) {
    const WeightMatrix m = token_embd.matrix();
    float* y = buf(out);
    const int64_t w = width(out);
    par(T_, T_ * w, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t) embed_token(m, tokens_[t], y + t * w);
    });
    invalidate(out);
}

void CpuBackend::rms_norm(Act in, const NormWeight& w, Act out) {
    const float* x = buf(in);
    float* y = buf(out);
    const int64_t n = width(in);
    const float eps = hp_.rms_eps;
    par(T_, T_ * n * 2, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t) qwen3moe::rms_norm(x + t * n, w.w.data(), y + t * n, n, eps);
    });
    invalidate(out);
}

void CpuBackend::quantize(Act in) {
    // Rule: activations entering quantised matmuls are quantised ONCE per token per input
    // vector (quantize_row_q8k) and reused by every matrix reading them.
    if (mode_ != ActMode::q8 || width(in) % 256 != 0 || q8_[(int)in].empty()) return;
    quantize_rows_q8k(pool_, buf(in), width(in), T_, width(in), q8_[(int)in].data());
    q8_valid_[(int)in] = true;
}

void CpuBackend::matvec_into(const WeightMatrix& w, int n_tok, const float* x, int64_t x_stride,
                             const block_q8k* xq, int64_t xq_stride, float* y, int64_t y_stride) {
    qwen3moe::matvec(pool_, w, n_tok, x, x_stride, xq, xq_stride, y, y_stride, mode_, scratch_.data(),
                     scratch_stride_, prefetch_);
}

void CpuBackend::matvec(const Tensor& w, Act in, Act out) {
    const WeightMatrix m = w.matrix();
    const bool q8 = matvec_uses_q8(m.type, mode_);
    if (q8 && !q8_valid_[(int)in]) throw std::logic_error("matvec of " + w.name + ": input has no q8 copy");
    const int64_t win = width(in);
    matvec_into(m, T_, buf(in), win, q8 ? q8_[(int)in].data() : nullptr, win / 256, buf(out), width(out));
    invalidate(out);
}

void CpuBackend::matvec_qkv(const Tensor& wq, const Tensor& wk, const Tensor& wv, Act in) {
    // One parallel region over the rows of all three matrices (global row i: q rows, then k
    // rows, then v rows); each (token, row) output is the same matvec_rows call as in matvec().
    const WeightMatrix m[3] = {wq.matrix(), wk.matrix(), wv.matrix()};
    const Act outs[3] = {Act::q, Act::k, Act::v};
    const int64_t win = width(in);
    bool q8[3];
    int64_t rows_total = 0, work = 0;
    for (int j = 0; j < 3; ++j) {
        q8[j] = matvec_uses_q8(m[j].type, mode_);
        if (q8[j] && !q8_valid_[(int)in]) throw std::logic_error("matvec of " + std::string(j == 0 ? wq.name : j == 1 ? wk.name : wv.name) + ": input has no q8 copy");
        rows_total += m[j].n_rows;
        work += m[j].n_rows * m[j].n_cols * T_;
    }
    const float* x = buf(in);
    const block_q8k* xq = q8_[(int)in].empty() ? nullptr : q8_[(int)in].data();
    if (matvec_use_tiles(m[0], T_, mode_) && matvec_use_tiles(m[1], T_, mode_) && matvec_use_tiles(m[2], T_, mode_)) {
        // AMX tiles: the activations laid out once; work units are whole 16-row tiles of each matrix
        matvec_prepare_tiles(pool_, xq, win / 256, T_, win, &tiles_);
        int64_t units[4] = {0, 0, 0, 0};  // first unit of matrix j
        for (int j = 0; j < 3; ++j) units[j + 1] = units[j] + (m[j].n_rows + 15) / 16;
        par(units[3], work, [&](int64_t u0, int64_t u1, int tid) {
            float* scr = scratch_.data() + tid * scratch_stride_;
            for (int j = 0; j < 3; ++j) {
                const int64_t a = std::max(u0, units[j]), b = std::min(u1, units[j + 1]);
                if (a < b)
                    matvec_rows(m[j], (a - units[j]) * 16, std::min((b - units[j]) * 16, m[j].n_rows), T_, x, win, xq,
                                win / 256, buf(outs[j]), width(outs[j]), mode_, scr, prefetch_, &tiles_);
            }
        });
        for (Act a : outs) invalidate(a);
        return;
    }
    par(rows_total, work, [&](int64_t i0, int64_t i1, int tid) {
        float* scr = scratch_.data() + tid * scratch_stride_;
        int64_t base = 0;
        for (int j = 0; j < 3; ++j) {
            const int64_t r0 = i0 > base ? i0 - base : 0;
            const int64_t r1 = i1 - base < m[j].n_rows ? i1 - base : m[j].n_rows;
            if (r0 < r1)
                matvec_rows(m[j], r0, r1, T_, x, win, q8[j] ? xq : nullptr, win / 256, buf(outs[j]), width(outs[j]),
                            mode_, scr, prefetch_);
            base += m[j].n_rows;
        }
    });
    for (Act a : outs) invalidate(a);
}

void CpuBackend::q_norm_rope_head(int64_t t, int h, const float* q_norm_w) {
    const int hd = hp_.head_dim;
    const int64_t o = t * hp_.q_dim() + (int64_t)h * hd;
    const int pos = pos0_ + (int)t;
    qwen3moe::rms_norm(buf(Act::q) + o, q_norm_w, buf(Act::q_normed) + o, hd, hp_.rms_eps);
    rope_neox(buf(Act::q_normed) + o, buf(Act::q_rope) + o, hd, rope_.cos_row(pos), rope_.sin_row(pos));
}

void CpuBackend::qk_norm_rope_kv_append(int il, const NormWeight& q_norm, const NormWeight& k_norm) {
    const int hd = hp_.head_dim, nh = hp_.n_head, nkv = hp_.n_head_kv;
    const int64_t Q = hp_.q_dim(), KV = hp_.kv_dim();
    const float eps = hp_.rms_eps;
    for (Act a : {Act::q_normed, Act::k_normed, Act::q_rope, Act::k_rope}) invalidate(a);
    if (T_ == 1) {
        // Decode: the few k heads (SIMD norm + RoPE: ~0.1 us each) and the KV append on this
        // thread, no pool round trip; the q heads are done inside attention's region by the
        // thread that attends with them (q_norm_pending_). Same per-head calls, same values.
        const int pos = pos0_;
        for (int g = 0; g < nkv; ++g) {
            const int64_t o = (int64_t)g * hd;
            qwen3moe::rms_norm(buf(Act::k) + o, k_norm.w.data(), buf(Act::k_normed) + o, hd, eps);
            rope_neox(buf(Act::k_normed) + o, buf(Act::k_rope) + o, hd, rope_.cos_row(pos), rope_.sin_row(pos));
        }
        kv_.store(il, pos, buf(Act::k_rope), buf(Act::v));
        q_norm_pending_ = q_norm.w.data();
        return;
    }
    q_norm_pending_ = nullptr;
    // Items = (token, head), q heads then k heads, so that a decode step's 36 heads also spread
    // over the pool: each head's norm + rotation cost ~0.7 us on the 16-core target with the
    // scalar canonical fmas (the SIMD twins of ops/vec-ops.h: ~0.05 us). The work estimate
    // counts ~16 multiply-add units per element for that.
    const int nhh = nh + nkv;
    par(T_ * nhh, T_ * (Q + KV) * 16, [&](int64_t i0, int64_t i1, int) {
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t t = i / nhh;
            const int h = (int)(i % nhh);
            const int pos = pos0_ + (int)t;
            const float* c = rope_.cos_row(pos);
            const float* s = rope_.sin_row(pos);
            if (h < nh) {
                const int64_t o = t * Q + (int64_t)h * hd;
                qwen3moe::rms_norm(buf(Act::q) + o, q_norm.w.data(), buf(Act::q_normed) + o, hd, eps);
                rope_neox(buf(Act::q_normed) + o, buf(Act::q_rope) + o, hd, c, s);
            } else {
                const int64_t o = t * KV + (int64_t)(h - nh) * hd;
                qwen3moe::rms_norm(buf(Act::k) + o, k_norm.w.data(), buf(Act::k_normed) + o, hd, eps);
                rope_neox(buf(Act::k_normed) + o, buf(Act::k_rope) + o, hd, c, s);
            }
        }
    });
    // Rule: KV cache holds K after rope and V (f16 in q8 mode, f32 in f32 mode).
    par(T_, T_ * KV * 4, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t) kv_.store(il, pos0_ + (int)t, buf(Act::k_rope) + t * KV, buf(Act::v) + t * KV);
    });
}

void CpuBackend::attention(int il) {
    const int hd = hp_.head_dim, nh = hp_.n_head;
    const int group = hp_.n_head / hp_.n_head_kv;
    const int64_t Q = hp_.q_dim(), KV = hp_.kv_dim();
    const void* kc = kv_.k_layer(il);
    const void* vc = kv_.v_layer(il);
    const bool f16 = kv_.is_f16();
    const int64_t sstride = n_ctx_ + 2 * (int64_t)hd;
    const int64_t work = (int64_t)T_ * nh * (pos0_ + T_) * hd * 2;
    // Causal work grows with t: items are taken in the token order 0, T-1, 1, T-2, ... so each
    // thread's contiguous chunk of items holds early and late tokens alike (prefill balance).
    const int64_t T = T_;
    const float* q_norm_w = q_norm_pending_;  // decode: this region also does the q heads' norm + RoPE
    q_norm_pending_ = nullptr;
    par(T * nh, work, [&](int64_t i0, int64_t i1, int tid) {
        float* base = attn_scratch_.data() + tid * sstride;
        AttnScratch sc{base, base + n_ctx_, base + n_ctx_ + hd};
        for (int64_t i = i0; i < i1; ++i) {
            const int64_t j = i / nh;
            const int64_t t = (j & 1) ? T - 1 - j / 2 : j / 2;
            const int h = (int)(i % nh);
            if (q_norm_w) q_norm_rope_head(t, h, q_norm_w);
            const int g = h / group;  // Rule: kv head g = h / (n_head / n_head_kv)
            const int n_kv = pos0_ + (int)t + 1;  // keys 0..p
            attention_head(buf(Act::q_rope) + t * Q + (int64_t)h * hd, kc, vc, f16, KV, (int64_t)g * hd, n_kv, hd,
                           kq_scale_, buf(Act::attn_out) + t * Q + (int64_t)h * hd, sc);
        }
    });
    invalidate(Act::attn_out);
}

void CpuBackend::add(Act a, Act b, Act out) {
    const int64_t n = (int64_t)T_ * width(out);
    const float* x = buf(a);
    const float* y = buf(b);
    float* z = buf(out);
    // Rule: residual = x + y (one rounding per element, so any split gives the same values).
    auto add_range = [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) z[i] = x[i] + y[i];
    };
    if (n >= kParallelAddValues)
        pool_.parallel_for(n, add_range);
    else
        add_range(0, n);
    invalidate(out);
}

void CpuBackend::router_topk() {
    const int ne = hp_.n_expert, k = hp_.n_expert_used;
    const float* l = buf(Act::router_logits);
    float* p = buf(Act::router_probs);
    int32_t* idx = indices();
    float* w = buf(Act::router_weights);
    auto route = [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) moe_router(l + t * ne, ne, k, p + t * ne, idx + t * k, w + t * k);
    };
    if (T_ >= kParallelRouterTokens)
        pool_.parallel_for(T_, route);  // tokens are independent: the same values per token
    else
        route(0, T_);
}

void CpuBackend::moe_experts(const Tensor& gate_exps, const Tensor& up_exps, const Tensor& down_exps, Act in) {
    const int K = hp_.n_expert_used, NE = hp_.n_expert;
    const int64_t E = hp_.n_embd, F = hp_.n_ff_exp;
    const int32_t* idx = indices();
    const int n_ent = T_ * K;

    using op_profile::OpScope;
    // 1. group entries (t, r) by expert (counting sort, ascending t then r inside a group)
    std::optional<OpScope> group_scope;
    group_scope.emplace(ProfOp::experts_group);
    std::fill(grp_count_.begin(), grp_count_.end(), 0);
    for (int i = 0; i < n_ent; ++i) grp_count_[idx[i]]++;
    int n_active = 0;
    grp_off_[0] = 0;
    for (int e = 0; e < NE; ++e) {
        grp_off_[e + 1] = grp_off_[e] + grp_count_[e];
        if (grp_count_[e]) grp_active_[n_active++] = e;
    }
    std::fill(grp_count_.begin(), grp_count_.end(), 0);
    for (int i = 0; i < n_ent; ++i) {
        const int e = idx[i];
        const int pos = grp_off_[e] + grp_count_[e]++;
        grp_entry_[pos] = i;
        grp_pos_[i] = pos;
    }

    // 2. gather the input rows (f32 and, in q8 mode, the q8 copy made once by quantize())
    const bool gu_q8 = matvec_uses_q8(gate_exps.type, mode_) || matvec_uses_q8(up_exps.type, mode_);
    const bool gu_f32 = !matvec_uses_q8(gate_exps.type, mode_) || !matvec_uses_q8(up_exps.type, mode_);
    if (gu_q8 && !q8_valid_[(int)in]) throw std::logic_error("moe_experts: input has no q8 copy");
    const int64_t nbE = E / 256;
    // (copies only, one entry per item: any split gives the same buffers; a prefill batch's
    // few MB of copies in parallel instead of on this thread, decode's 8 entries stay here)
    const int64_t gather_bytes = (gu_f32 ? (int64_t)sizeof(float) * E : 0) + (gu_q8 ? (int64_t)sizeof(block_q8k) * nbE : 0);
    // Decode (one token): every entry's input is token 0's row, so gate and up read that row in
    // place (stride 0) instead of gathered copies of it (the same values).
    const bool one_token = T_ == 1;
    if (!one_token) par(n_ent, (int64_t)n_ent * gather_bytes / 8, [&](int64_t p0, int64_t p1, int) {
        for (int64_t p = p0; p < p1; ++p) {
            const int64_t t = grp_entry_[p] / K;
            if (gu_f32) std::memcpy(g_in_.data() + p * E, buf(in) + t * E, sizeof(float) * E);
            if (gu_q8) std::memcpy(g_in_q8_.data() + p * nbE, q8_[(int)in].data() + t * nbE, sizeof(block_q8k) * nbE);
        }
    });

    group_scope.reset();
    // 3. gate and up: work items (active expert, row); each expert's rows read once for its
    //    whole token group (multi-token dot).
    const block_q8k* gin_q8 = !gu_q8 ? nullptr : one_token ? q8_[(int)in].data() : g_in_q8_.data();
    const float* gin = one_token ? buf(in) : g_in_.data();
    const int64_t gin_stride = one_token ? 0 : E, gin_q8_stride = one_token ? 0 : nbE;
    auto run_rows = [&](const Tensor& W, int64_t rows_per_expert, const float* xin, int64_t xs,
                        const block_q8k* xq, int64_t xqs, float* out, int64_t ys, int64_t i0, int64_t i1, float* scratch) {
        int64_t i = i0;
        while (i < i1) {
            const int a = (int)(i / rows_per_expert);
            const int64_t r0 = i % rows_per_expert;
            int64_t r1 = rows_per_expert;
            if (i1 - i < r1 - r0) r1 = r0 + (i1 - i);
            const int e = grp_active_[a];
            const int off = grp_off_[e], cnt = grp_off_[e + 1] - grp_off_[e];
            matvec_rows(W.matrix(e), r0, r1, cnt, xin ? xin + off * xs : nullptr, xs,
                        xq ? xq + off * xqs : nullptr, xqs, out + off * ys, ys, mode_, scratch, prefetch_);
            i += r1 - r0;
        }
    };
    // The pool splits work units, not rows, so a thread whose rows belong to a popular expert
    // does not hold up the others (prefill). A row of expert a weighs u_a = cnt_a * nb + f units:
    // its (token, block) pairs plus f = cpu_tuning::row_pairs() pairs for the row's fixed cost
    // (weight decode, reduce padding, per-token trees, the call: ~35-55 ns on Zen 4, ~as much
    // as 16 pairs of a short row), so experts with few tokens are not underweighted. A unit
    // boundary w maps to the global row active_row(w) = first row starting at or after w,
    // monotone in w, so the chunks still partition the rows (scheduling only: same bits).
    const int64_t row_pairs = cpu_tuning::row_pairs();
    auto units_per_row = [&](int a, int64_t nb) -> int64_t {
        const int e = grp_active_[a];
        return (int64_t)(grp_off_[e + 1] - grp_off_[e]) * nb + row_pairs;
    };
    auto total_units = [&](int64_t rows_per_expert, int64_t nb) -> int64_t {
        int64_t u = 0;
        for (int a = 0; a < n_active; ++a) u += units_per_row(a, nb) * rows_per_expert;
        return u;
    };
    auto active_row = [&](int64_t w, int64_t rows_per_expert, int64_t nb) -> int64_t {
        for (int a = 0; a < n_active; ++a) {
            const int64_t u = units_per_row(a, nb);
            const int64_t units = u * rows_per_expert;
            if (w < units) return (int64_t)a * rows_per_expert + (w + u - 1) / u;
            w -= units;
        }
        return (int64_t)n_active * rows_per_expert;
    };
    const int64_t nb_gu = (E + 255) / 256, nb_down = (F + 255) / 256;  // blocks per row (pair units)
    std::optional<OpScope> gu_scope;
    gu_scope.emplace(ProfOp::experts_gate_up,
                                              (int64_t)n_active * F * (int64_t)(gate_exps.row_bytes + up_exps.row_bytes));
    par(total_units(F, nb_gu), (int64_t)n_ent * F * E * 2, [&](int64_t w0, int64_t w1, int tid) {
        float* scr = scratch_.data() + tid * scratch_stride_;
        const int64_t i0 = active_row(w0, F, nb_gu), i1 = active_row(w1, F, nb_gu);
        run_rows(gate_exps, F, gin, gin_stride, gin_q8, gin_q8_stride, g_gate_.data(), F, i0, i1, scr);
        run_rows(up_exps, F, gin, gin_stride, gin_q8, gin_q8_stride, g_up_.data(), F, i0, i1, scr);
    });

    gu_scope.reset();
    // 4. SwiGLU per entry, then its q8 copy (the down projection's input, quantised once)
    std::optional<OpScope> sw_scope;
    sw_scope.emplace(ProfOp::experts_swiglu);
    const bool d_q8 = matvec_uses_q8(down_exps.type, mode_);
    const int64_t nbF = F / 256;
    // (work ~ n_ent * F: the SIMD SwiGLU + quantiser cost a few ns per value, so a decode
    // token's k entries run on this thread instead of paying a pool round trip)
    par(n_ent, (int64_t)n_ent * F * (d_q8 ? 2 : 1), [&](int64_t p0, int64_t p1, int) {
        for (int64_t p = p0; p < p1; ++p) {
            swiglu(g_gate_.data() + p * F, g_up_.data() + p * F, g_act_.data() + p * F, F);
            if (d_q8) quantize_row_q8k(g_act_.data() + p * F, g_act_q8_.data() + p * nbF, F);
        }
    });

    sw_scope.reset();
    // 5. down: work items (active expert, output row)
    std::optional<OpScope> down_scope;
    down_scope.emplace(ProfOp::experts_down, (int64_t)n_active * E * (int64_t)down_exps.row_bytes);
    par(total_units(E, nb_down), (int64_t)n_ent * F * E, [&](int64_t w0, int64_t w1, int tid) {
        float* scr = scratch_.data() + tid * scratch_stride_;
        const int64_t i0 = active_row(w0, E, nb_down), i1 = active_row(w1, E, nb_down);
        run_rows(down_exps, E, g_act_.data(), F, d_q8 ? g_act_q8_.data() : nullptr, nbF, g_down_.data(), E, i0, i1, scr);
    });

    down_scope.reset();
    OpScope combine_scope(ProfOp::experts_combine);
    // 6. combine in rank order: moe[d] = +0.0f; for r: moe[d] = canon_fma(w_r, y_r[d], moe[d]).
    //    The per-entry captures (expert_gate/up/swiglu/out, rank order) are not scattered here:
    //    copy_to_host gathers them from the grouped buffers when a capture asks (they stay valid
    //    until the next moe_experts), so a forward without captures copies nothing (a 64-token
    //    prefill of coder30b: 8.9 MB per layer).
    const float* wts = buf(Act::router_weights);
    par(T_, (int64_t)T_ * K * E, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t) {
            float* moe = buf(Act::moe_out) + t * E;
            for (int64_t d = 0; d < E; ++d) moe[d] = 0.0f;
            for (int r = 0; r < K; ++r) {
                const int64_t p = grp_pos_[t * K + r];
                const float w = wts[t * K + r];
                canon_axpy(w, g_down_.data() + p * E, moe, E);  // moe[d] = canon_fma(w, y[d], moe[d])
            }
        }
    });
    grouped_valid_ = true;
    invalidate(Act::moe_out);
}

void CpuBackend::lm_head(const Tensor& w, Act in, Rows rows) {
    const WeightMatrix m = w.matrix();
    std::vector<float>& lb = bufs_[(int)Act::logits];
    const size_t need = (size_t)rows.n * (size_t)width(Act::logits);
    if (lb.size() < need) lb.assign(need, 0.0f);  // grows once per larger row count
    const bool q8 = matvec_uses_q8(m.type, mode_);
    if (q8 && !q8_valid_[(int)in]) throw std::logic_error("lm_head: input has no q8 copy");
    const int64_t win = width(in);
    matvec_into(m, rows.n, buf(in) + (int64_t)rows.r0 * win, win,
                q8 ? q8_[(int)in].data() + (int64_t)rows.r0 * (win / 256) : nullptr, win / 256, lb.data(),
                width(Act::logits));
}

void CpuBackend::copy_to_host(Act a, Rows rows, void* dst) {
    const int64_t w = width(a);
    if (q_norm_pending_ && (a == Act::q_normed || a == Act::q_rope)) {
        // a capture of the q heads before attention ran: complete them here (same calls)
        for (int64_t t = 0; t < T_; ++t)
            for (int h = 0; h < hp_.n_head; ++h) q_norm_rope_head(t, h, q_norm_pending_);
        q_norm_pending_ = nullptr;
    }
    const float* grouped = a == Act::expert_gate     ? g_gate_.data()
                           : a == Act::expert_up     ? g_up_.data()
                           : a == Act::expert_swiglu ? g_act_.data()
                           : a == Act::expert_out    ? g_down_.data()
                                                     : nullptr;
    if (grouped) {
        // rank-order rows (t, r) of the last moe_experts, from its expert-grouped buffers
        if (!grouped_valid_) throw std::logic_error("copy_to_host: no expert outputs since the batch began");
        const int64_t K = hp_.n_expert_used, ew = w / K;  // floats per entry
        float* out = static_cast<float*>(dst);
        for (int64_t t = rows.r0; t < (int64_t)rows.r0 + rows.n; ++t)
            for (int64_t r = 0; r < K; ++r)
                std::memcpy(out + ((t - rows.r0) * K + r) * ew, grouped + (int64_t)grp_pos_[t * K + r] * ew,
                            sizeof(float) * (size_t)ew);
        return;
    }
    if (a == Act::router_indices)
        std::memcpy(dst, indices() + (int64_t)rows.r0 * w, sizeof(int32_t) * (size_t)(rows.n * w));
    else
        std::memcpy(dst, buf(a) + (int64_t)rows.r0 * w, sizeof(float) * (size_t)(rows.n * w));
}

}  // namespace qwen3moe
