// Bindings for the model area: _core.Model (the engine; GIL released in forward/step) and
// _core.ops (per-op entry points for unit tests and as the CPU twin of device kernels).
// Python-facing behaviour lives in python/qwen3moe/model.py.
//
// Threads: forward/step/reset release the GIL and then take the model's call mutex, so other
// Python threads run meanwhile and concurrent calls on one model are serialised (never
// interleaved inside the KV cache). The mutex is only ever waited for without the GIL held.
// Ctrl-C: see SignalPoll.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "bindings/bindings.h"
#include "model/qwen3moe.h"
#include "ops/attention.h"
#include "ops/canon.h"
#include "ops/embed.h"
#include "ops/matvec.h"
#include "ops/moe-router.h"
#include "ops/rms-norm.h"
#include "ops/rope.h"
#include "ops/softmax.h"
#include "ops/swiglu.h"
#include "quant/quant.h"
#include "runtime/errors.h"
#include "runtime/cpu-tuning.h"
#include "runtime/op-profile.h"
#include "runtime/sampler.h"
#include "runtime/thread-pool.h"

namespace py = pybind11;

namespace qwen3moe::py_bind {

namespace {

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;

// Hand a vector's storage to NumPy without copying.
template <class T>
py::array to_numpy(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
    auto* heap = new std::vector<T>(std::move(v));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
    return py::array_t<T>(shape, heap->data(), owner);
}

py::object gguf_value(const GGUFValue& v) {
    switch (v.type) {
        case GGUFType::UINT8: case GGUFType::UINT16: case GGUFType::UINT32: case GGUFType::UINT64:
            return py::int_(v.u);
        case GGUFType::INT8: case GGUFType::INT16: case GGUFType::INT32: case GGUFType::INT64:
            return py::int_(v.i);
        case GGUFType::FLOAT32: case GGUFType::FLOAT64:
            return py::float_(v.f);
        case GGUFType::BOOL:
            return py::bool_(v.u != 0);
        case GGUFType::STRING:
            return py::reinterpret_steal<py::str>(PyUnicode_DecodeUTF8(v.s.data(), (py::ssize_t)v.s.size(), "replace"));
        case GGUFType::ARRAY: {
            py::list out(v.arr.size());
            for (size_t i = 0; i < v.arr.size(); ++i) out[i] = gguf_value(v.arr[i]);
            return py::object(std::move(out));
        }
    }
    return py::none();
}

std::vector<int32_t> checked_tokens(const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& a,
                                    int n_vocab) {
    if (a.ndim() != 1) throw std::invalid_argument("tokens must be a 1-D sequence of token ids");
    const int64_t n = a.shape(0);
    if (n == 0) throw std::invalid_argument("empty input: at least one token is needed");
    std::vector<int32_t> out((size_t)n);
    const int64_t* p = a.data();
    for (int64_t i = 0; i < n; ++i) {
        if (p[i] < 0 || p[i] >= n_vocab)
            throw std::invalid_argument("token id " + std::to_string(p[i]) + " at position " + std::to_string(i) +
                                        " is out of range: the vocabulary size is " + std::to_string(n_vocab) +
                                        " (valid ids 0.." + std::to_string(n_vocab - 1) + ")");
        out[(size_t)i] = (int32_t)p[i];
    }
    return out;
}

// Ctrl-C during a long forward. Python runs signal handlers only in the main thread and only
// while it holds the GIL, which the forward has released. On the main thread the forward's
// cancel check (polled after every layer) takes the GIL at most every kPollInterval and calls
// PyErr_CheckSignals; when a handler raised (KeyboardInterrupt), that exception stays pending
// in this thread, the forward stops with Cancelled (the model restored), and the binding
// rethrows the pending exception once it holds the GIL again. Other threads are not polled
// (they never receive signals).
class SignalPoll {
public:
    SignalPoll() {
        const py::object main_ident = py::module_::import("threading").attr("main_thread")().attr("ident");
        main_ = main_ident.cast<unsigned long>() == PyThread_get_thread_ident();
        fn_ = [this] {
            const auto now = std::chrono::steady_clock::now();
            if (polled_ && now - last_ < kPollInterval) return false;
            polled_ = true;
            last_ = now;
            py::gil_scoped_acquire gil;
            return PyErr_CheckSignals() != 0;
        };
    }
    const CancelCheck* get() const { return main_ ? &fn_ : nullptr; }

private:
    static constexpr std::chrono::milliseconds kPollInterval{20};
    bool main_ = false;                              // running on Python's main thread
    bool polled_ = false;                            // last_ is set
    std::chrono::steady_clock::time_point last_{};   // time of the last poll
    CancelCheck fn_;                                 // the check handed to forward/step
};

// Runs f() without the GIL, holding the model's call mutex; a Cancelled forward becomes the
// Python exception a signal handler raised (KeyboardInterrupt).
template <class F>
auto call_unlocked(Qwen3Moe& self, F&& f) -> decltype(f()) {
    try {
        py::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(self.call_mutex());
        return f();
    } catch (const Cancelled&) {
        if (PyErr_Occurred()) throw py::error_already_set();
        throw std::runtime_error("forward cancelled");
    }
}

ActMode mode_from_name(const std::string& s) {
    if (s == "q8") return ActMode::q8;
    if (s == "f32") return ActMode::f32;
    throw std::invalid_argument("activations must be \"q8\" or \"f32\", got \"" + s + "\"");
}

void bind_ops(py::module_& m) {
    py::module_ o = m.def_submodule("ops", "per-op CPU entry points (tests, CUDA twins)");
    o.def("rms_norm", [](F32 x, F32 w, float eps) {
        if (x.size() != w.size()) throw std::invalid_argument("x and w differ in length");
        std::vector<float> y((size_t)x.size());
        rms_norm(x.data(), w.data(), y.data(), x.size(), eps);
        return to_numpy(std::move(y), {(py::ssize_t)x.size()});
    });
    o.def("rope_table", [](int n_pos, int hd, double base) {
        if (n_pos < 1 || hd < 2 || hd % 2) throw std::invalid_argument("bad rope table size");
        RopeTable t = build_rope_table(n_pos, hd, base);
        return to_numpy(std::move(t.data), {2, n_pos, hd / 2});
    }, "[2, n_pos, hd/2] float32: cos block then sin block");
    o.def("rope_neox", [](F32 x, F32 c, F32 s) {
        const int hd = (int)x.shape(x.ndim() - 1);
        if (hd % 2 || c.size() != hd / 2 || s.size() != hd / 2) throw std::invalid_argument("bad rope shapes");
        std::vector<float> y((size_t)x.size());
        for (py::ssize_t h = 0; h < x.size() / hd; ++h) rope_neox(x.data() + h * hd, y.data() + h * hd, hd, c.data(), s.data());
        std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
        return to_numpy(std::move(y), shape);
    });
    o.def("attention_kq_scale", &attention_kq_scale);
    // k, v: [n_kv, hd] float32 or uint16 (f16 bits)
    o.def("attention_head", [](F32 q, py::array k, py::array v) {
        const int hd = (int)q.size();
        const bool f16 = k.dtype().is(py::dtype::of<uint16_t>());
        if (f16 != v.dtype().is(py::dtype::of<uint16_t>())) throw std::invalid_argument("k and v dtypes differ");
        py::array kc = f16 ? py::array(py::array_t<uint16_t, py::array::c_style | py::array::forcecast>(k))
                           : py::array(F32(k));
        py::array vc = f16 ? py::array(py::array_t<uint16_t, py::array::c_style | py::array::forcecast>(v))
                           : py::array(F32(v));
        if (kc.ndim() != 2 || kc.shape(1) != hd || vc.ndim() != 2 || vc.shape(0) != kc.shape(0) || vc.shape(1) != hd)
            throw std::invalid_argument("k and v must be [n_kv, hd]");
        const int n_kv = (int)kc.shape(0);
        std::vector<float> scores(n_kv), row(hd), tile(hd), out(hd);
        attention_head(q.data(), kc.data(), vc.data(), f16, hd, 0, n_kv, hd, attention_kq_scale(hd), out.data(),
                       AttnScratch{scores.data(), row.data(), tile.data()});
        return to_numpy(std::move(out), {hd});
    });
    o.def("softmax", [](F32 l) {
        std::vector<float> p((size_t)l.size());
        softmax_canon(l.data(), p.data(), l.size());
        return to_numpy(std::move(p), {(py::ssize_t)l.size()});
    });
    o.def("router_topk", [](F32 probs, int k) {
        const int n = (int)probs.size();
        if (k < 1 || k > n) throw std::invalid_argument("k must be in 1..n_expert");
        std::vector<int32_t> idx(k);
        std::vector<float> w(k);
        router_topk(probs.data(), n, k, idx.data(), w.data());
        return py::make_tuple(to_numpy(std::move(idx), {k}), to_numpy(std::move(w), {k}));
    });
    o.def("moe_router", [](F32 logits, int k) {
        const int n = (int)logits.size();
        if (k < 1 || k > n) throw std::invalid_argument("k must be in 1..n_expert");
        std::vector<float> p(n), w(k);
        std::vector<int32_t> idx(k);
        moe_router(logits.data(), n, k, p.data(), idx.data(), w.data());
        return py::make_tuple(to_numpy(std::move(p), {n}), to_numpy(std::move(idx), {k}), to_numpy(std::move(w), {k}));
    });
    o.def("swiglu", [](F32 g, F32 u) {
        if (g.size() != u.size()) throw std::invalid_argument("g and u differ in length");
        std::vector<float> s((size_t)g.size());
        swiglu(g.data(), u.data(), s.data(), g.size());
        return to_numpy(std::move(s), {(py::ssize_t)g.size()});
    });
    o.def("canon_exp", [](F32 x) {
        std::vector<float> y((size_t)x.size());
        for (py::ssize_t i = 0; i < x.size(); ++i) y[i] = canon_exp(x.data()[i]);
        return to_numpy(std::move(y), {(py::ssize_t)x.size()});
    });
    // w: uint8 [n_rows, row_bytes] of `type`; x: [T, n_cols] float32 -> y [T, n_rows]
    o.def("matvec", [](uint32_t type, py::array_t<uint8_t, py::array::c_style | py::array::forcecast> w, int64_t n_cols,
                       F32 x, const std::string& mode, int threads, bool single) {
        const GGMLTypeTraits* tr = ggml_type_traits(type);
        if (!tr || !ggml_type_supported(type)) throw std::invalid_argument("unsupported type");
        if (n_cols % tr->block_size) throw std::invalid_argument("n_cols not a multiple of the block size");
        const size_t row_bytes = (size_t)(n_cols / tr->block_size * tr->type_size);
        if (w.ndim() != 2 || (size_t)w.shape(1) != row_bytes) throw std::invalid_argument("w must be [n_rows, row_bytes]");
        if (x.ndim() != 2 || x.shape(1) != n_cols) throw std::invalid_argument("x must be [T, n_cols]");
        const ActMode am = mode_from_name(mode);
        WeightMatrix m{type, w.data(), n_cols, (int64_t)w.shape(0), row_bytes};
        const int T = (int)x.shape(0);
        std::vector<float> y((size_t)T * m.n_rows);
        std::vector<block_q8k> xq;
        if (matvec_uses_q8(type, am)) {
            if (n_cols % 256) throw std::invalid_argument("q8 activations need n_cols % 256 == 0");
            xq.resize((size_t)T * n_cols / 256);
        }
        ThreadPool pool(threads);
        if (!xq.empty()) quantize_rows_q8k(pool, x.data(), n_cols, T, n_cols, xq.data());
        std::vector<float> scratch((size_t)pool.size() * n_cols);
        if (single) {  // the single (token, row) definition, no multi-token reuse
            for (int t = 0; t < T; ++t)
                for (int64_t r = 0; r < m.n_rows; ++r)
                    y[(size_t)t * m.n_rows + r] = matvec_one(m, r, x.data() + (int64_t)t * n_cols,
                                                             xq.empty() ? nullptr : xq.data() + (int64_t)t * (n_cols / 256),
                                                             am, scratch.data());
        } else {
            matvec(pool, m, T, x.data(), n_cols, xq.empty() ? nullptr : xq.data(), n_cols / 256, y.data(), m.n_rows, am,
                   scratch.data(), n_cols);
        }
        return to_numpy(std::move(y), {T, (py::ssize_t)m.n_rows});
    }, py::arg("type"), py::arg("w"), py::arg("n_cols"), py::arg("x"), py::arg("mode") = "q8", py::arg("threads") = 1,
       py::arg("single") = false);
    o.def("embed", [](uint32_t type, py::array_t<uint8_t, py::array::c_style | py::array::forcecast> w, int64_t n_cols,
                      int32_t token) {
        const GGMLTypeTraits* tr = ggml_type_traits(type);
        if (!tr || !ggml_type_supported(type)) throw std::invalid_argument("unsupported type");
        const size_t row_bytes = (size_t)(n_cols / tr->block_size * tr->type_size);
        if (w.ndim() != 2 || (size_t)w.shape(1) != row_bytes) throw std::invalid_argument("w must be [n_rows, row_bytes]");
        if (token < 0 || token >= w.shape(0)) throw std::invalid_argument("token out of range");
        WeightMatrix m{type, w.data(), n_cols, (int64_t)w.shape(0), row_bytes};
        std::vector<float> y((size_t)n_cols);
        embed_token(m, token, y.data());
        return to_numpy(std::move(y), {(py::ssize_t)n_cols});
    });
    o.def("sample", [](F32 logits, float temperature, int top_k, float top_p, float min_p, uint64_t seed,
                       uint64_t counter) {
        SamplerParams p{temperature, top_k, top_p, min_p, seed};
        Sampler s;
        return s.sample(logits.data(), logits.size(), p, counter);
    }, py::arg("logits"), py::arg("temperature") = 0.0f, py::arg("top_k") = 0, py::arg("top_p") = 1.0f,
       py::arg("min_p") = 0.0f, py::arg("seed") = 0, py::arg("counter") = 0);
    o.def("rng_uniform", &rng_uniform);
    o.def("thread_pool_sum", [](int threads, int64_t n) {
        // parallel_for coverage check: every index visited exactly once
        ThreadPool pool(threads);
        std::vector<int> hits((size_t)n, 0);
        pool.parallel_for(n, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) hits[(size_t)i] += 1;
        });
        return to_numpy(std::move(hits), {(py::ssize_t)n});
    });
}

}  // namespace

void bind_model(py::module_& m) {
    bind_ops(m);
    // CPU tuning knobs (runtime/cpu-tuning.h): scheduling only, never the results.
    m.def("cpu_tuning", &cpu_tuning_get, "Current CPU tuning knobs (name -> value).");
    m.def("cpu_tuning_set", &cpu_tuning_set, py::arg("name"), py::arg("value"),
          "Set a CPU tuning knob (process-wide; results never depend on it).");
    m.def("cpu_tuning_choices", &cpu_tuning_choices, "Values bench/cpu_profile.py compares for each knob.");
    // Op profiler (runtime/op-profile.h): bench/cpu_profile.py.
    m.def("profile_enable", [](bool on) { op_profile::set_enabled(on); }, py::arg("on"),
          "Turn the per-op profiler on or off (process-wide; off by default).");
    m.def("profile_reset", [] { op_profile::reset(); }, "Zero the per-op profiler counters.");
    m.def("profile_read", [] {
        py::list out;
        const std::vector<ProfStats> st = op_profile::read();
        for (int i = 0; i < (int)ProfOp::count; ++i) {
            const ProfStats& s = st[i];
            const ProfOp parent = prof_op_parent((ProfOp)i);
            py::dict d;
            d["op"] = prof_op_name((ProfOp)i);
            d["parent"] = parent == ProfOp::count ? py::object(py::none()) : py::object(py::str(prof_op_name(parent)));
            d["calls"] = s.calls;
            d["ns"] = s.ns;
            d["bytes"] = s.bytes;
            d["regions"] = s.regions;
            d["region_ns"] = s.region_ns;
            d["busy_ns"] = s.busy_ns;
            d["busy_max_ns"] = s.busy_max_ns;
            d["wake_ns"] = s.wake_ns;
            d["region_threads"] = s.region_threads;
            out.append(d);
        }
        return out;
    }, "Per-op profiler counters since the last reset: a list of dicts (op, parent, calls, ns, bytes, regions, "
       "region_ns, busy_ns, busy_max_ns, wake_ns, region_threads).");
    py::class_<Qwen3Moe>(m, "Model")
        .def(py::init([](const std::string& path, int n_ctx, const std::string& activations, int threads,
                         const std::string& device, const py::object& progress, size_t max_vram) {
                 ModelOptions o;
                 o.n_ctx = n_ctx;
                 o.mode = mode_from_name(activations);
                 o.threads = threads;
                 o.device = device;
                 o.max_vram = max_vram;
                 if (!progress.is_none()) {
                     // Device weight upload progress: called without the GIL held, so take it; the
                     // shared_ptr keeps copies of the callback free of Python refcounting.
                     auto cb = std::make_shared<py::object>(progress);
                     o.progress = [cb](size_t done, size_t total) {
                         py::gil_scoped_acquire gil;
                         (*cb)(done, total);
                     };
                 }
                 py::gil_scoped_release nogil;
                 return std::make_unique<Qwen3Moe>(path, o);
             }),
             py::arg("path"), py::arg("n_ctx") = 4096, py::arg("activations") = "q8", py::arg("threads") = 0,
             py::arg("device") = "cpu", py::arg("progress") = py::none(), py::arg("max_vram") = 0)
        .def("forward",
             [](Qwen3Moe& self, py::array_t<int64_t, py::array::c_style | py::array::forcecast> tokens,
                const std::vector<std::string>& stages, const std::vector<int>& layers, const std::string& logits) {
                 const HParams& hp = self.hparams();
                 std::vector<int32_t> tok = checked_tokens(tokens, hp.n_vocab);
                 const LogitsMode lm = logits_mode_from_name(logits);
                 CaptureSpec spec(stages, layers, hp.n_layer);
                 ForwardResult res;
                 SignalPoll poll;
                 call_unlocked(self, [&] { self.forward(tok.data(), (int)tok.size(), spec, lm, res, poll.get()); });
                 const py::ssize_t T = (py::ssize_t)tok.size();
                 py::object lg = py::none();
                 if (res.logits_rows)
                     lg = res.logits_rows == 1 && lm == LogitsMode::last
                              ? to_numpy(std::move(res.logits), {(py::ssize_t)hp.n_vocab})
                              : to_numpy(std::move(res.logits), {(py::ssize_t)res.logits_rows, (py::ssize_t)hp.n_vocab});
                 py::list caps;
                 for (auto& kv : res.captures.buffers()) {
                     CaptureBuffer& b = kv.second;
                     std::vector<py::ssize_t> shape{T};
                     for (int64_t d : b.row_shape) shape.push_back((py::ssize_t)d);
                     py::array arr = stage_is_int(b.stage) ? to_numpy(std::move(b.i), shape) : to_numpy(std::move(b.f), shape);
                     caps.append(py::make_tuple(stage_name(b.stage), b.layer < 0 ? py::object(py::none()) : py::int_(b.layer), arr));
                 }
                 return py::make_tuple(lg, caps);
             },
             py::arg("tokens"), py::arg("stages"), py::arg("layers"), py::arg("logits") = "last")
        .def("step",
             [](Qwen3Moe& self, py::array_t<int64_t, py::array::c_style | py::array::forcecast> tokens, float temperature,
                int top_k, float top_p, float min_p, uint64_t seed, uint64_t counter) {
                 std::vector<int32_t> tok = checked_tokens(tokens, self.hparams().n_vocab);
                 SamplerParams p{temperature, top_k, top_p, min_p, seed};
                 SignalPoll poll;
                 return call_unlocked(self, [&] { return self.step(tok.data(), (int)tok.size(), p, counter, poll.get()); });
             },
             "forward (logits of the last row only) then one canonical sample", py::arg("tokens"),
             py::arg("temperature") = 0.0f, py::arg("top_k") = 0, py::arg("top_p") = 1.0f, py::arg("min_p") = 0.0f,
             py::arg("seed") = 0, py::arg("counter") = 0)
        .def("reset", [](Qwen3Moe& self) { call_unlocked(self, [&] { self.reset(); }); })
        .def_property_readonly("n_past", [](Qwen3Moe& self) { return call_unlocked(self, [&] { return self.n_past(); }); })
        .def_property_readonly("n_ctx", &Qwen3Moe::n_ctx)
        .def_property_readonly("threads", &Qwen3Moe::threads)
        .def("hparams",
             [](const Qwen3Moe& self) {
                 const HParams& h = self.hparams();
                 py::dict d;
                 d["n_layer"] = h.n_layer;
                 d["n_embd"] = h.n_embd;
                 d["n_head"] = h.n_head;
                 d["n_head_kv"] = h.n_head_kv;
                 d["head_dim"] = h.head_dim;
                 d["n_expert"] = h.n_expert;
                 d["n_expert_used"] = h.n_expert_used;
                 d["n_ff_exp"] = h.n_ff_exp;
                 d["n_vocab"] = h.n_vocab;
                 d["n_ctx_train"] = h.n_ctx_train;
                 d["rope_freq_base"] = h.rope_freq_base;
                 d["rms_eps"] = h.rms_eps;
                 d["tied_output"] = self.weights().tied_output;
                 return d;
             })
        .def("memory",
             [](Qwen3Moe& self) {
                 py::dict d;
                 d["weights_mapped"] = self.weights().mapped_bytes;
                 d["kv_cache"] = self.backend().kv_bytes();
                 d["scratch"] = self.backend().scratch_bytes();
                 return d;
             })
        .def("decode_path", [](Qwen3Moe& self) { return self.backend().decode_path(); })
        .def("decode_trace",
             [](Qwen3Moe& self) -> py::object {
                 std::vector<uint64_t> t = call_unlocked(self, [&] { return self.backend().decode_trace(); });
                 if (t.empty()) return py::none();
                 const py::ssize_t n_kernels = (py::ssize_t)t.size() / ((py::ssize_t)kDecodeTraceBlocks * kDecodeTraceMarks * 2);
                 return to_numpy(std::move(t), {n_kernels, (py::ssize_t)kDecodeTraceBlocks, (py::ssize_t)kDecodeTraceMarks, 2});
             },
             "fused decode phase trace [kernel, block, mark, (globaltimer ns, SM clock)] or None")
        .def("timer_start", [](Qwen3Moe& self) { self.backend().timer_start(); },
             "mark the device clock after the work queued so far (CUDA events; no-op on the CPU)")
        .def("timer_stop",
             [](Qwen3Moe& self) {
                 py::gil_scoped_release release;
                 return self.backend().timer_stop();
             },
             "mark the device clock, wait, return milliseconds since timer_start (negative on the CPU)")
        .def("tensor_types",
             [](const Qwen3Moe& self) {
                 py::dict d;  // type name -> tensor count, over the tensors of the file
                 for (const GGUFTensorInfo& t : self.file().tensors()) {
                     py::str k(ggml_type_name(t.type));
                     d[k] = (d.contains(k) ? d[k].cast<int>() : 0) + 1;
                 }
                 return d;
             })
        .def("metadata", [](const Qwen3Moe& self) {
            py::dict d;
            const GGUFFile& f = self.file();
            for (const std::string& k : f.keys()) d[py::str(k)] = gguf_value(*f.find(k));
            return d;
        });
    m.attr("STAGES") = [] {
        py::list l;
        for (int i = 0; i < kStageCount; ++i) l.append(stage_name((Stage)i));
        return l;
    }();
    m.attr("LAYER_STAGES") = [] {
        py::list l;
        for (int i = 0; i < kStageCount; ++i)
            if (stage_is_layer((Stage)i)) l.append(stage_name((Stage)i));
        return l;
    }();
}

}  // namespace qwen3moe::py_bind
