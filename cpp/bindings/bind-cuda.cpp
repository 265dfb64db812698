// Bindings for the CUDA backend: device discovery (always present; "no GPU" without a CUDA
// build) and, in CUDA builds, per-op test entry points `cuda_ops_<op>(numpy...) -> numpy`
// that upload the inputs, run one kernel launcher of cuda/cuda-ops.h, synchronise and
// download the outputs. They exist to compare each kernel with its CPU twin bit for bit
// (tests_py/test_cuda_ops.py); they are not a public API. The CPU references are the engine's
// per-op bindings (_core.ops) and the quant API; `cpu_ops_moe_combine` adds the one missing
// (the CPU backend's inline combine rule), present in every build.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "ops/canon.h"

#ifdef QWEN3MOE_HAVE_CUDA
#include "cuda/cuda-backend.h"
#include "cuda/cuda-ops.h"
#include "model/qwen3moe.h"
#include "cuda/cuda-runtime.h"
#include "quant/ggml-types.h"
#endif

namespace py = pybind11;

namespace qwen3moe::py_bind {

namespace {

template <class T> using Arr = py::array_t<T, py::array::c_style | py::array::forcecast>;
using Shape = std::vector<py::ssize_t>;

void require(bool ok, const std::string& msg) {
    if (!ok) throw std::invalid_argument("cuda_ops: " + msg);
}

// ---- CPU twin of the one op the engine has no per-op binding for -------------------------

// The CPU backend's combine rule: moe[d] = +0.0f; for r: moe[d] = canon_fma(w_r, y_r[d], moe[d]);
// out = residual + moe -> (moe, out).
py::tuple cpu_moe_combine(const Arr<float>& y, const Arr<float>& w, const Arr<float>& residual) {
    require(y.ndim() == 3 && w.ndim() == 2 && residual.ndim() == 2 && w.shape(0) == y.shape(0) &&
                w.shape(1) == y.shape(1) && residual.shape(0) == y.shape(0) && residual.shape(1) == y.shape(2),
            "y (n_tok, k, n), w (n_tok, k), residual (n_tok, n)");
    const int64_t n_tok = y.shape(0), k = y.shape(1), n = y.shape(2);
    py::array_t<float> moe(Shape{n_tok, n}), out(Shape{n_tok, n});
    for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t d = 0; d < n; ++d) {
            float acc = 0.0f;
            for (int64_t r = 0; r < k; ++r) acc = canon_fma(w.data()[t * k + r], y.data()[(t * k + r) * n + d], acc);
            moe.mutable_data()[t * n + d] = acc;
            out.mutable_data()[t * n + d] = residual.data()[t * n + d] + acc;
        }
    return py::make_tuple(moe, out);
}

}  // namespace

#ifdef QWEN3MOE_HAVE_CUDA
namespace {

namespace qc = qwen3moe::cuda;

// `a` placed `offset` bytes into a new device buffer (offsets: tests of kernels' alignment cases).
template <class T> qc::DeviceBuffer upload_at(const Arr<T>& a, int64_t offset) {
    qc::DeviceBuffer b((size_t)(a.nbytes() + offset));
    qc::memcpy_h2d(static_cast<uint8_t*>(b.get()) + offset, a.data(), (size_t)a.nbytes(), nullptr);
    return b;
}
template <class T> qc::DeviceBuffer upload(const Arr<T>& a) { return upload_at(a, 0); }

template <class T> qc::DeviceBuffer zeros(size_t count) {
    qc::DeviceBuffer b(count * sizeof(T));
    qc::memset_device(b.get(), 0, b.size(), nullptr);
    return b;
}

template <class T> py::array_t<T> download(const qc::DeviceBuffer& b, const Shape& shape) {
    py::array_t<T> out(shape);
    if (out.nbytes() != (py::ssize_t)b.size()) throw std::logic_error("cuda_ops: download size mismatch");
    qc::stream_sync(nullptr);  // surfaces kernel faults before the copy
    qc::memcpy_d2h(out.mutable_data(), b.get(), b.size(), nullptr);
    return out;
}

int64_t row_bytes_of(uint32_t type, int64_t n) {
    const GGMLTypeTraits* tr = ggml_type_traits(type);
    require(tr != nullptr, "unknown type id " + std::to_string(type));
    require(n > 0 && n % tr->block_size == 0, "row length " + std::to_string(n) + " is not a multiple of the " +
                                                  tr->name + " block size");
    return n / tr->block_size * tr->type_size;
}

// Weight bytes of shape (rows, row_bytes) or (n_mat, rows, row_bytes): returns (n_mat, rows).
std::pair<int64_t, int64_t> weight_shape(const Arr<uint8_t>& w, int64_t row_bytes) {
    require(w.ndim() == 2 || w.ndim() == 3, "weights must be (rows, row_bytes) or (n_mat, rows, row_bytes)");
    require(w.shape(w.ndim() - 1) == row_bytes, "weight rows must be " + std::to_string(row_bytes) + " bytes");
    return w.ndim() == 2 ? std::make_pair<int64_t, int64_t>(1, w.shape(0))
                         : std::make_pair<int64_t, int64_t>(w.shape(0), w.shape(1));
}

// Shared slot logic of the two matvec bindings. ids (n_tok, n_used) or None (one slot per token).
struct Slots {
    qc::DeviceBuffer ids;     // device [n_tok * n_used] int32 (empty without ids)
    qc::DeviceBuffer groups;  // device grouping of the slots by id (moe_group), or empty
    int n_tok = 0, n_used = 1;
};

// With ids, several tokens and `group`: the device grouping the backend's prefill uses.
void make_groups(Slots& s, int64_t n_mat, bool group) {
    const int64_t n_slots = (int64_t)s.n_tok * s.n_used;
    if (!group || !s.ids.get() || s.n_tok < 2 || n_mat > qc::kMoeGroupMaxMat) return;
    s.groups = qc::DeviceBuffer(qc::moe_group_ints(n_slots, n_mat) * sizeof(int32_t));
    qc::moe_group(s.ids.as<int32_t>(), n_slots, n_mat, s.groups.as<int32_t>(), nullptr);
}
Slots make_slots(const std::optional<Arr<int32_t>>& ids, int64_t n_act_rows, bool act_per_slot) {
    Slots s;
    if (ids) {
        require(ids->ndim() == 2, "ids must be (n_tok, n_used)");
        s.n_tok = (int)ids->shape(0);
        s.n_used = (int)ids->shape(1);
        s.ids = upload(*ids);
    } else {
        s.n_tok = (int)n_act_rows;
    }
    const int64_t need = act_per_slot ? (int64_t)s.n_tok * s.n_used : s.n_tok;
    require(need == n_act_rows, "activation rows (" + std::to_string(n_act_rows) + ") do not match the slots (" +
                                    std::to_string(need) + ")");
    return s;
}

py::array_t<uint8_t> op_quantize_q8k(const Arr<float>& x) {
    require(x.ndim() == 2, "x must be (rows, n)");
    const int64_t rows = x.shape(0), n = x.shape(1);
    require(n % QK_K == 0, "n must be a multiple of 256");
    auto dx = upload(x);
    qc::DeviceBuffer dy((size_t)(rows * (n / QK_K)) * sizeof(block_q8k));
    qc::quantize_q8k(dx.as<float>(), dy.as<block_q8k>(), rows, n, nullptr);
    return download<uint8_t>(dy, {rows, (py::ssize_t)((n / QK_K) * sizeof(block_q8k))});
}

// matvec_q8k on uploaded operands: one launch, then `reps` more, each timed by CUDA events on
// the default stream (into *ms); returns the output of the last launch.
py::array_t<float> run_matvec_q8k(uint32_t type, const Arr<uint8_t>& w, int64_t n, const Arr<uint8_t>& a,
                                  const std::optional<Arr<int32_t>>& ids, bool act_per_slot, bool group, int reps,
                                  std::vector<float>* ms, int64_t a_offset = 0, int64_t w_offset = 0) {
    const int64_t rb = row_bytes_of(type, n);
    const auto [n_mat, n_rows] = weight_shape(w, rb);
    require(n % QK_K == 0, "n must be a multiple of 256");
    require(a.ndim() == 2 && a.shape(1) == (py::ssize_t)((n / QK_K) * sizeof(block_q8k)),
            "activations must be (rows, n/256 * 292) Q8K bytes");
    Slots s = make_slots(ids, a.shape(0), act_per_slot);
    make_groups(s, n_mat, group);
    require(a_offset >= 0 && a_offset % 4 == 0 && w_offset >= 0 && w_offset % 4 == 0,
            "a_offset and w_offset must be non-negative multiples of 4");
    auto dw = upload_at(w, w_offset);
    auto da = upload_at(a, a_offset);
    const block_q8k* a_dev = reinterpret_cast<const block_q8k*>(da.as<uint8_t>() + a_offset);
    qc::DeviceBuffer dout((size_t)((int64_t)s.n_tok * s.n_used * n_rows) * sizeof(float));
    qc::MatvecArgs p;
    p.type = type;
    p.w = dw.as<uint8_t>() + w_offset;
    p.n_rows = n_rows;
    p.n = n;
    p.n_mat = n_mat;
    p.ids = s.ids.as<int32_t>();
    p.n_tok = s.n_tok;
    p.n_used = s.n_used;
    p.act_per_slot = act_per_slot;
    p.out = dout.as<float>();
    p.groups = s.groups.as<int32_t>();
    qc::matvec_q8k(p, a_dev, nullptr);
    if (reps > 0) {
        void* e0 = qc::event_create();
        void* e1 = qc::event_create();
        try {
            for (int i = 0; i < reps; ++i) {
                qc::event_record(e0, nullptr);
                qc::matvec_q8k(p, a_dev, nullptr);
                qc::event_record(e1, nullptr);
                ms->push_back(qc::event_elapsed_ms(e0, e1));
            }
        } catch (...) {
            qc::event_destroy(e0);
            qc::event_destroy(e1);
            throw;
        }
        qc::event_destroy(e0);
        qc::event_destroy(e1);
    }
    return download<float>(dout, {(py::ssize_t)s.n_tok * s.n_used, n_rows});
}

py::array_t<float> op_matvec_q8k(uint32_t type, const Arr<uint8_t>& w, int64_t n, const Arr<uint8_t>& a,
                                 const std::optional<Arr<int32_t>>& ids, bool act_per_slot, bool group,
                                 int64_t a_offset, int64_t w_offset) {
    return run_matvec_q8k(type, w, n, a, ids, act_per_slot, group, 0, nullptr, a_offset, w_offset);
}

// op_matvec_q8k with the operands uploaded once and `reps` launches, each timed by CUDA events
// on the default stream (after one untimed warm-up launch): returns (out, [ms per launch]).
py::tuple op_matvec_q8k_timed(uint32_t type, const Arr<uint8_t>& w, int64_t n, const Arr<uint8_t>& a,
                              const std::optional<Arr<int32_t>>& ids, bool act_per_slot, bool group, int reps) {
    require(reps >= 1, "reps must be >= 1");
    std::vector<float> ms;
    py::array_t<float> out = run_matvec_q8k(type, w, n, a, ids, act_per_slot, group, reps, &ms);
    return py::make_tuple(out, ms);
}

py::array_t<float> op_matvec_f32act(uint32_t type, const Arr<uint8_t>& w, int64_t n, const Arr<float>& x,
                                    const std::optional<Arr<int32_t>>& ids, bool act_per_slot, bool group) {
    const int64_t rb = row_bytes_of(type, n);
    const auto [n_mat, n_rows] = weight_shape(w, rb);
    require(x.ndim() == 2 && x.shape(1) == n, "x must be (rows, n)");
    Slots s = make_slots(ids, x.shape(0), act_per_slot);
    make_groups(s, n_mat, group);
    auto dw = upload(w);
    auto dx = upload(x);
    qc::DeviceBuffer dout((size_t)((int64_t)s.n_tok * s.n_used * n_rows) * sizeof(float));
    qc::MatvecArgs p;
    p.type = type;
    p.w = dw.get();
    p.n_rows = n_rows;
    p.n = n;
    p.n_mat = n_mat;
    p.ids = s.ids.as<int32_t>();
    p.n_tok = s.n_tok;
    p.n_used = s.n_used;
    p.act_per_slot = act_per_slot;
    p.out = dout.as<float>();
    p.groups = s.groups.as<int32_t>();
    qc::matvec_f32act(p, dx.as<float>(), nullptr);
    return download<float>(dout, {(py::ssize_t)s.n_tok * s.n_used, n_rows});
}

// Fused RMSNorm + Q8K: (y (rows, n) float32, yq (rows, n/256*292) Q8K bytes).
py::tuple op_rms_norm_q8k(const Arr<float>& x, const Arr<float>& w, float eps) {
    require(x.ndim() == 2 && w.ndim() == 1 && w.shape(0) == x.shape(1), "x (rows, n), w (n)");
    const int64_t rows = x.shape(0), n = x.shape(1);
    require(n % QK_K == 0, "n must be a multiple of 256");
    auto dx = upload(x);
    auto dw = upload(w);
    qc::DeviceBuffer dy((size_t)x.nbytes());
    qc::DeviceBuffer dq((size_t)(rows * (n / QK_K)) * sizeof(block_q8k));
    qc::rms_norm_q8k(dx.as<float>(), dw.as<float>(), dy.as<float>(), dq.as<block_q8k>(), rows, n, eps, nullptr);
    return py::make_tuple(download<float>(dy, {rows, n}),
                          download<uint8_t>(dq, {rows, (py::ssize_t)((n / QK_K) * sizeof(block_q8k))}));
}

py::array_t<float> op_rms_norm(const Arr<float>& x, const Arr<float>& w, float eps) {
    require(x.ndim() == 2 && w.ndim() == 1 && w.shape(0) == x.shape(1), "x (rows, n), w (n)");
    auto dx = upload(x);
    auto dw = upload(w);
    qc::DeviceBuffer dy((size_t)x.nbytes());
    qc::rms_norm(dx.as<float>(), dw.as<float>(), dy.as<float>(), x.shape(0), x.shape(1), eps, nullptr);
    return download<float>(dy, {x.shape(0), x.shape(1)});
}

// Returns (normed, rotated, cache) where cache is (n_pos, n_heads*hd) float32 or uint16
// (f16 bits) when cache_type is "f32"/"f16", else None.
py::tuple op_norm_rope(const Arr<float>& x, const Arr<float>& w, float eps, const Arr<int32_t>& pos,
                       const Arr<float>& cos, const Arr<float>& sin, const std::string& cache_type) {
    require(x.ndim() == 3, "x must be (n_tok, n_heads, hd)");
    const int n_tok = (int)x.shape(0), n_heads = (int)x.shape(1), hd = (int)x.shape(2);
    require(w.ndim() == 1 && w.shape(0) == hd, "w must be (hd,)");
    require(pos.ndim() == 1 && pos.shape(0) == n_tok, "pos must be (n_tok,)");
    require(cos.ndim() == 2 && cos.shape(1) == hd / 2 && sin.ndim() == 2 && sin.shape(0) == cos.shape(0) &&
                sin.shape(1) == hd / 2,
            "cos, sin must be (n_pos, hd/2)");
    require(cache_type == "" || cache_type == "f32" || cache_type == "f16", "cache_type must be '', 'f32' or 'f16'");
    const int64_t n_pos = cos.shape(0);
    for (int t = 0; t < n_tok; ++t) require(pos.data()[t] >= 0 && pos.data()[t] < n_pos, "position out of range");
    auto dx = upload(x);
    auto dw = upload(w);
    auto dpos = upload(pos);
    auto dcos = upload(cos);
    auto dsin = upload(sin);
    qc::DeviceBuffer dnormed((size_t)x.nbytes()), dout((size_t)x.nbytes());
    const bool f16 = cache_type == "f16";
    const size_t cache_elems = (size_t)n_pos * n_heads * hd;
    qc::DeviceBuffer dcache = cache_type.empty() ? qc::DeviceBuffer()
                              : f16             ? zeros<uint16_t>(cache_elems)
                                                : zeros<float>(cache_elems);
    qc::NormRopeArgs p;
    p.x = dx.as<float>();
    p.w = dw.as<float>();
    p.eps = eps;
    p.n_tok = n_tok;
    p.n_heads = n_heads;
    p.hd = hd;
    p.pos = dpos.as<int32_t>();
    p.rope_cos = dcos.as<float>();
    p.rope_sin = dsin.as<float>();
    p.n_pos = n_pos;
    p.normed = dnormed.as<float>();
    p.out = dout.as<float>();
    p.cache = dcache.get();
    p.cache_f16 = f16;
    qc::norm_rope(p, nullptr);
    const Shape xs{n_tok, n_heads, hd};
    py::object cache = py::none();
    if (!cache_type.empty()) {
        const Shape cs{(py::ssize_t)n_pos, (py::ssize_t)n_heads * hd};
        cache = f16 ? py::object(download<uint16_t>(dcache, cs)) : py::object(download<float>(dcache, cs));
    }
    return py::make_tuple(download<float>(dnormed, xs), download<float>(dout, xs), cache);
}

// Cache (n_ctx, row_len) after storing x[t] at row pos[t]: float32, or uint16 f16 bits.
py::object op_kv_store(const Arr<float>& x, const Arr<int32_t>& pos, int64_t n_ctx, bool f16) {
    require(x.ndim() == 2 && pos.ndim() == 1 && pos.shape(0) == x.shape(0), "x (n_tok, row_len), pos (n_tok,)");
    const int64_t row_len = x.shape(1);
    auto dx = upload(x);
    auto dpos = upload(pos);
    qc::DeviceBuffer dc = f16 ? zeros<uint16_t>((size_t)(n_ctx * row_len)) : zeros<float>((size_t)(n_ctx * row_len));
    qc::kv_store(dx.as<float>(), dpos.as<int32_t>(), (int)x.shape(0), row_len, dc.get(), n_ctx, f16, nullptr);
    const Shape cs{(py::ssize_t)n_ctx, (py::ssize_t)row_len};
    return f16 ? py::object(download<uint16_t>(dc, cs)) : py::object(download<float>(dc, cs));
}

// k_cache / v_cache: (n_ctx, n_head_kv*hd) float32, or uint16 holding f16 bits.
py::array_t<float> op_attention(const Arr<float>& q, const py::array& k_cache, const py::array& v_cache,
                                const Arr<int32_t>& pos, int n_head_kv, int split, bool known_max_pos,
                                bool allow_invalid_pos) {
    require(q.ndim() == 3, "q must be (n_tok, n_head, hd)");
    const int n_tok = (int)q.shape(0), n_head = (int)q.shape(1), hd = (int)q.shape(2);
    require(pos.ndim() == 1 && pos.shape(0) == n_tok, "pos must be (n_tok,)");
    const bool f16 = k_cache.dtype().is(py::dtype::of<uint16_t>());
    require(v_cache.dtype().is(k_cache.dtype()) && (f16 || k_cache.dtype().is(py::dtype::of<float>())),
            "caches must both be float32 or both uint16 (f16 bits)");
    require(k_cache.ndim() == 2 && v_cache.ndim() == 2 && k_cache.shape(1) == (py::ssize_t)n_head_kv * hd &&
                v_cache.shape(0) == k_cache.shape(0) && v_cache.shape(1) == k_cache.shape(1),
            "caches must be (n_ctx, n_head_kv*hd)");
    const int64_t n_ctx = k_cache.shape(0);
    // allow_invalid_pos passes positions outside [0, n_ctx) to the device (their rows come back NaN).
    if (!allow_invalid_pos)
        for (int t = 0; t < n_tok; ++t) require(pos.data()[t] >= 0 && pos.data()[t] < n_ctx, "position out of range");
    qc::DeviceBuffer dk, dv;
    if (f16) {
        dk = upload(Arr<uint16_t>::ensure(k_cache));
        dv = upload(Arr<uint16_t>::ensure(v_cache));
    } else {
        dk = upload(Arr<float>::ensure(k_cache));
        dv = upload(Arr<float>::ensure(v_cache));
    }
    auto dq = upload(q);
    auto dpos = upload(pos);
    qc::DeviceBuffer dout((size_t)q.nbytes());
    qc::AttentionArgs p;
    p.q = dq.as<float>();
    p.k_cache = dk.get();
    p.v_cache = dv.get();
    p.cache_f16 = f16;
    p.n_ctx = n_ctx;
    p.pos = dpos.as<int32_t>();
    p.n_tok = n_tok;
    p.n_head = n_head;
    p.n_head_kv = n_head_kv;
    p.hd = hd;
    p.out = dout.as<float>();
    p.split = split;
    qc::DeviceBuffer scratch;
    int32_t mx = 0;
    for (int t = 0; t < n_tok; ++t) mx = std::max(mx, pos.data()[t]);
    // The largest position, as the backend passes it (lets the one-block path keep its scores
    // in shared memory); known_max_pos=False exercises the recomputing path.
    if (known_max_pos || split == 0 || split == 2) p.max_pos = mx;
    if (split != 1) {
        p.scratch_floats = std::max(qc::attention_scratch_floats(n_tok, n_head, hd, n_ctx),
                                    qc::attention_prefill_scratch_floats(n_tok, n_head, n_head_kv, n_ctx));
        scratch = qc::DeviceBuffer(p.scratch_floats * sizeof(float));
        p.scratch = scratch.as<float>();
    }
    qc::attention(p, nullptr);
    return download<float>(dout, {n_tok, (py::ssize_t)n_head * hd});
}

py::tuple op_router(const Arr<float>& logits, int k) {
    require(logits.ndim() == 2, "logits must be (n_tok, n_expert)");
    const int n_tok = (int)logits.shape(0), n_expert = (int)logits.shape(1);
    auto dl = upload(logits);
    qc::DeviceBuffer dp((size_t)logits.nbytes()), di((size_t)n_tok * k * 4), dw((size_t)n_tok * k * 4);
    qc::router_topk(dl.as<float>(), n_tok, n_expert, k, dp.as<float>(), di.as<int32_t>(), dw.as<float>(), nullptr);
    return py::make_tuple(download<float>(dp, {n_tok, n_expert}), download<int32_t>(di, {n_tok, k}),
                          download<float>(dw, {n_tok, k}));
}

py::array_t<float> op_swiglu(const Arr<float>& g, const Arr<float>& u) {
    require(g.size() == u.size(), "g and u must have the same size");
    auto dg = upload(g);
    auto du = upload(u);
    qc::DeviceBuffer ds((size_t)g.nbytes());
    qc::swiglu(dg.as<float>(), du.as<float>(), ds.as<float>(), g.size(), nullptr);
    return download<float>(ds, {g.size()});
}

py::tuple op_moe_combine(const Arr<float>& y, const Arr<float>& w, const Arr<float>& residual) {
    require(y.ndim() == 3 && w.ndim() == 2 && residual.ndim() == 2, "y (n_tok, k, n), w (n_tok, k), residual (n_tok, n)");
    const int n_tok = (int)y.shape(0), k = (int)y.shape(1);
    const int64_t n = y.shape(2);
    require(w.shape(0) == n_tok && w.shape(1) == k && residual.shape(0) == n_tok && residual.shape(1) == n,
            "shapes do not match");
    auto dy = upload(y);
    auto dw = upload(w);
    auto dr = upload(residual);
    qc::DeviceBuffer dm((size_t)residual.nbytes()), dout((size_t)residual.nbytes());
    qc::moe_combine(dy.as<float>(), dw.as<float>(), dr.as<float>(), n_tok, k, n, dm.as<float>(), dout.as<float>(),
                    nullptr);
    return py::make_tuple(download<float>(dm, {n_tok, (py::ssize_t)n}), download<float>(dout, {n_tok, (py::ssize_t)n}));
}

py::array_t<float> op_embed(uint32_t type, const Arr<uint8_t>& table, int64_t n, const Arr<int32_t>& tokens) {
    const int64_t rb = row_bytes_of(type, n);
    require(table.ndim() == 2 && table.shape(1) == rb, "table must be (n_vocab, row_bytes)");
    require(tokens.ndim() == 1, "tokens must be 1-D");
    const int64_t n_vocab = table.shape(0);
    for (py::ssize_t t = 0; t < tokens.shape(0); ++t)
        if (tokens.data()[t] < 0 || tokens.data()[t] >= n_vocab)
            throw std::out_of_range("cuda_ops_embed: token id " + std::to_string(tokens.data()[t]) +
                                    " outside the vocabulary of " + std::to_string(n_vocab));
    auto dt = upload(table);
    auto dtok = upload(tokens);
    const int n_tok = (int)tokens.shape(0);
    qc::DeviceBuffer dout((size_t)(n_tok * n) * sizeof(float));
    qc::embed(type, dt.get(), n_vocab, n, dtok.as<int32_t>(), n_tok, dout.as<float>(), nullptr);
    return download<float>(dout, {n_tok, (py::ssize_t)n});
}

// Host models (no GPU needed): the kernel's lane decomposition of the Q8K dot and the device
// dequantiser's per-value formula, run on the CPU.
py::array_t<float> host_model_matvec_q8k(uint32_t type, const Arr<uint8_t>& w, int64_t n, const Arr<uint8_t>& a) {
    const int64_t rb = row_bytes_of(type, n);
    require(w.ndim() == 2 && w.shape(1) == rb, "weights must be (rows, row_bytes)");
    require(n % QK_K == 0 && a.ndim() == 2 && a.shape(1) == (py::ssize_t)((n / QK_K) * sizeof(block_q8k)),
            "activations must be (n_tok, n/256 * 292) Q8K bytes");
    std::vector<block_q8k> blocks((size_t)(a.shape(0) * (n / QK_K)));
    std::memcpy(blocks.data(), a.data(), blocks.size() * sizeof(block_q8k));
    py::array_t<float> out(Shape{a.shape(0), w.shape(0)});
    qc::matvec_q8k_host_model(type, w.data(), w.shape(0), n, blocks.data(), a.shape(0), out.mutable_data());
    return out;
}

py::array_t<float> host_model_dequant(uint32_t type, const Arr<uint8_t>& raw, int64_t n) {
    const int64_t rb = row_bytes_of(type, n);
    require(raw.ndim() == 2 && raw.shape(1) == rb, "raw must be (rows, row_bytes)");
    py::array_t<float> out(Shape{raw.shape(0), (py::ssize_t)n});
    for (py::ssize_t r = 0; r < raw.shape(0); ++r)
        qc::dequant_row_host_model(type, raw.data() + r * rb, n, out.mutable_data() + r * n);
    return out;
}

py::array_t<float> op_add(const Arr<float>& a, const Arr<float>& b) {
    require(a.size() == b.size(), "a and b must have the same size");
    auto da = upload(a);
    auto db = upload(b);
    qc::DeviceBuffer dc((size_t)a.nbytes());
    qc::add(da.as<float>(), db.as<float>(), dc.as<float>(), a.size(), nullptr);
    return download<float>(dc, {a.size()});
}

}  // namespace
#endif  // QWEN3MOE_HAVE_CUDA

#ifdef QWEN3MOE_HAVE_CUDA
namespace {
// device="cuda" / "cuda:N" for Qwen3Moe (registered when the module is initialised).
std::unique_ptr<Backend> cuda_backend_factory(const HParams& hp, const ModelOptions& o, const RopeTable& rope,
                                              const Weights& w) {
    qwen3moe::cuda::CudaBackendOptions co;
    co.device = qwen3moe::cuda::parse_cuda_device(o.device);
    co.progress = o.progress;
    co.max_vram = o.max_vram;
    return qwen3moe::cuda::make_cuda_backend(hp, o.mode, o.n_ctx, rope, w, co);
}
}  // namespace
#endif

void bind_cuda(py::module_& m) {
    m.def("cpu_ops_moe_combine", &cpu_moe_combine, py::arg("y"), py::arg("w"), py::arg("residual"));
#ifdef QWEN3MOE_HAVE_CUDA
    m.attr("built_with_cuda") = true;
    register_backend("cuda", &cuda_backend_factory);
    m.def("cuda_device_count", &qwen3moe::cuda::device_count);
    m.def("cuda_device_name", &qwen3moe::cuda::device_name);
    m.def("cuda_driver_version", &qwen3moe::cuda::driver_version);

    m.def("cuda_mem_info", [](int dev) {
        qc::set_device(dev);
        size_t free_b = 0, total_b = 0;
        qc::mem_info(&free_b, &total_b);
        return py::make_tuple(free_b, total_b);
    }, py::arg("device") = 0, "(free, total) bytes of a CUDA device");
    m.def("cuda_synchronize", [](int dev) {
        qc::set_device(dev);
        qc::device_synchronize();
    }, py::arg("device") = 0, "waits for all queued work of a CUDA device (benchmark timing)");
    m.def("cuda_inject_alloc_failure", &qc::inject_alloc_failure, py::arg("n"),
          "test hook: the n-th device allocation from now fails (OutOfMemory); n <= 0 disarms. "
          "Returns the allocations made since the previous call.");
    m.def("cuda_ops_quantize_q8k", &op_quantize_q8k, py::arg("x"));
    m.def("cuda_ops_matvec_q8k", &op_matvec_q8k, py::arg("type"), py::arg("w"), py::arg("n"), py::arg("a"),
          py::arg("ids") = py::none(), py::arg("act_per_slot") = false, py::arg("group") = true,
          py::arg("a_offset") = 0, py::arg("w_offset") = 0,
          "One Q8K matvec launch; a_offset / w_offset place the activations / weights that many bytes "
          "past a device allocation's start (the kernels' alignment cases).");
    m.def("cuda_ops_matvec_q8k_timed", &op_matvec_q8k_timed, py::arg("type"), py::arg("w"), py::arg("n"),
          py::arg("a"), py::arg("ids") = py::none(), py::arg("act_per_slot") = false, py::arg("group") = true,
          py::arg("reps") = 20);
    m.def(
        "cuda_ops_mma_variant",
        [](const std::string& v) -> std::string {
            const int want = v == "old" ? qc::kMmaOld : v == "new" ? qc::kMmaWide : -1;
            require(want >= 0 || v.empty(), "mma variant must be 'old', 'new' or '' (query)");
            return qc::matvec_mma_select(want) == qc::kMmaOld ? "old" : "new";
        },
        py::arg("variant") = "",
        "Selects the int8 tensor-core prefill matvec ('old': 16-slot kernel, 'new': wide kernel) and "
        "returns the previous choice; '' only returns the current one.");
    m.def("cuda_ops_matvec_f32act", &op_matvec_f32act, py::arg("type"), py::arg("w"), py::arg("n"), py::arg("x"),
          py::arg("ids") = py::none(), py::arg("act_per_slot") = false, py::arg("group") = true);
    m.def("cuda_ops_rms_norm", &op_rms_norm, py::arg("x"), py::arg("w"), py::arg("eps"));
    m.def("cuda_ops_rms_norm_q8k", &op_rms_norm_q8k, py::arg("x"), py::arg("w"), py::arg("eps"));
    m.def("cuda_ops_norm_rope", &op_norm_rope, py::arg("x"), py::arg("w"), py::arg("eps"), py::arg("pos"),
          py::arg("cos"), py::arg("sin"), py::arg("cache_type") = "");
    m.def("cuda_ops_kv_store", &op_kv_store, py::arg("x"), py::arg("pos"), py::arg("n_ctx"), py::arg("f16"));
    m.def("cuda_ops_attention", &op_attention, py::arg("q"), py::arg("k_cache"), py::arg("v_cache"), py::arg("pos"),
          py::arg("n_head_kv"), py::arg("split") = 0, py::arg("known_max_pos") = true,
          py::arg("allow_invalid_pos") = false);
    m.def("cuda_ops_router", &op_router, py::arg("logits"), py::arg("k"));
    m.def("cuda_ops_swiglu", &op_swiglu, py::arg("g"), py::arg("u"));
    m.def("cuda_ops_moe_combine", &op_moe_combine, py::arg("y"), py::arg("w"), py::arg("residual"));
    m.def("cuda_ops_embed", &op_embed, py::arg("type"), py::arg("table"), py::arg("n"), py::arg("tokens"));
    m.def("cuda_ops_add", &op_add, py::arg("a"), py::arg("b"));
    m.def("cuda_host_model_matvec_q8k", &host_model_matvec_q8k, py::arg("type"), py::arg("w"), py::arg("n"),
          py::arg("a"));
    m.def("cuda_host_model_dequant", &host_model_dequant, py::arg("type"), py::arg("raw"), py::arg("n"));
#else
    m.attr("built_with_cuda") = false;
    m.def("cuda_device_count", []() { return 0; });
    m.def("cuda_device_name", [](int) { return std::string(); });
    m.def("cuda_driver_version", []() { return std::string(); });
    m.def("cuda_synchronize", [](int) {}, py::arg("device") = 0, "no-op without CUDA");
#endif
}

}  // namespace qwen3moe::py_bind
