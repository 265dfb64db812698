// Bindings for the quant area: thin wrappers over quant/quant.h and the canonical helpers of
// ops/canon.h, on flat contiguous NumPy buffers. Shapes, type-name lookup and docstrings live
// in python/qwen3moe/quant.py. Heavy loops run with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "ops/canon.h"
#include "quant/quant.h"
#include "runtime/errors.h"

namespace py = pybind11;

namespace qwen3moe::py_bind {

namespace {

using u8_array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
using f32_array = py::array_t<float, py::array::c_style | py::array::forcecast>;
using i8_array = py::array_t<int8_t, py::array::c_style | py::array::forcecast>;
using u16_array = py::array_t<uint16_t, py::array::c_style | py::array::forcecast>;

const GGMLTypeTraits& traits_of(uint32_t type) {
    const GGMLTypeTraits* t = ggml_type_traits(type);
    if (!t) throw UnsupportedType(std::string("unknown tensor type ") + ggml_type_name(type));
    return *t;
}

// Bytes of a row of n values of `type` (n must be a multiple of the block size).
int64_t row_bytes(uint32_t type, int64_t n) {
    const GGMLTypeTraits& t = traits_of(type);
    if (n < 0 || n % t.block_size != 0)
        throw std::invalid_argument("row of " + std::to_string(n) + " values is not a multiple of the " + t.name +
                                    " block size " + std::to_string(t.block_size));
    return n / t.block_size * t.type_size;
}

// Number of rows of n values in a weight buffer; the buffer must hold whole rows.
int64_t rows_in(uint32_t type, int64_t nbytes, int64_t n) {
    const int64_t rb = row_bytes(type, n);
    if (rb == 0 || nbytes % rb != 0)
        throw std::invalid_argument(std::to_string(nbytes) + " bytes is not a whole number of " +
                                    ggml_type_name(type) + " rows of " + std::to_string(n) + " values");
    return nbytes / rb;
}

// The row length of n_tok activation rows in `size` floats, checked for a Q8K dot of `type`.
int64_t q8k_dot_row_length(const char* fn, uint32_t type, int64_t size, int64_t n_tok) {
    const int64_t n = n_tok > 0 ? size / n_tok : 0;
    if (n_tok <= 0 || n * n_tok != size) throw std::invalid_argument(std::string(fn) + ": bad activation shape");
    if (!type_has_q8k_dot(type))
        throw UnsupportedType(std::string(fn) + ": no Q8K dot for tensor type " + ggml_type_name(type));
    if (n % QK_K != 0)
        throw std::invalid_argument(std::string(fn) + ": row length " + std::to_string(n) + " is not a multiple of 256");
    return n;
}

std::vector<block_q8k> quantize_activations(const float* x, int64_t n_tok, int64_t n) {
    std::vector<block_q8k> a((size_t)(n_tok * (n / QK_K)));
    for (int64_t t = 0; t < n_tok; ++t) quantize_row_q8k(x + t * n, a.data() + t * (n / QK_K), n);
    return a;
}

}  // namespace

void bind_quant(py::module_& m) {
    m.def("quant_types", []() {
        std::map<std::string, uint32_t> out;
        for (uint32_t id = 0; id < GGML_TYPE_COUNT; ++id)
            if (const GGMLTypeTraits* t = ggml_type_traits(id)) out[t->name] = id;
        return out;
    });
    m.def("quant_type_supported", [](uint32_t type) { return ggml_type_supported(type); });
    m.def("quant_type_name", [](uint32_t type) { return std::string(ggml_type_name(type)); });
    m.def("quant_block_size", [](uint32_t type) { return traits_of(type).block_size; });
    m.def("quant_type_size", [](uint32_t type) { return traits_of(type).type_size; });
    m.def("quant_row_bytes", &row_bytes);
    m.def("quant_has_q8k_dot", [](uint32_t type) { return type_has_q8k_dot(type); });

    m.def("quant_dequantize", [](u8_array raw, uint32_t type, int64_t n) {
        if (!ggml_type_supported(type))
            throw UnsupportedType(std::string("dequantize: unsupported tensor type ") + ggml_type_name(type));
        const int64_t need = row_bytes(type, n);
        if (raw.size() != need)
            throw std::invalid_argument(std::string("dequantize: ") + std::to_string(n) + " " + ggml_type_name(type) +
                                        " values need " + std::to_string(need) + " bytes, got " +
                                        std::to_string(raw.size()));
        f32_array out(n);
        const uint8_t* src = raw.data();
        float* dst = out.mutable_data();
        {
            py::gil_scoped_release nogil;
            dequantize_row(type, src, dst, n);
        }
        return out;
    });

    m.def("quant_quantize", [](f32_array x, uint32_t type) {
        const int64_t n = x.size();
        if (!ggml_type_supported(type))
            throw UnsupportedType(std::string("quantize: unsupported tensor type ") + ggml_type_name(type));
        const int64_t nbytes = row_bytes(type, n);
        u8_array out(nbytes);
        const float* src = x.data();
        uint8_t* dst = out.mutable_data();
        {
            py::gil_scoped_release nogil;
            quantize_row(type, src, dst, n);
        }
        return out;
    });

    m.def("quant_quantize_q8k", [](f32_array x) {
        const int64_t n = x.size();
        if (n % QK_K != 0)
            throw std::invalid_argument("quantize_q8k: length " + std::to_string(n) + " is not a multiple of 256");
        const int64_t nb = n / QK_K;
        std::vector<block_q8k> a((size_t)nb);
        {
            py::gil_scoped_release nogil;
            quantize_row_q8k(x.data(), a.data(), n);
        }
        f32_array d(nb);
        i8_array qs({nb, (int64_t)QK_K});
        py::array_t<int16_t> bsums({nb, (int64_t)(QK_K / 16)});
        for (int64_t b = 0; b < nb; ++b) {
            d.mutable_data()[b] = a[b].d;
            std::memcpy(qs.mutable_data() + b * QK_K, a[b].qs, QK_K);
            std::memcpy(bsums.mutable_data() + b * (QK_K / 16), a[b].bsums, sizeof(a[b].bsums));
        }
        return py::make_tuple(d, qs, bsums);
    });

    // x: (n_tok, n) float32; n_tok == 1 with single=True uses vec_dot_q8k, else the multi path.
    m.def("quant_dot_q8k", [](u8_array w, uint32_t type, f32_array x, int64_t n_tok, bool single) {
        const int64_t n = q8k_dot_row_length("dot_q8k", type, x.size(), n_tok);
        const int64_t rows = rows_in(type, w.size(), n);
        const int64_t rb = row_bytes(type, n);
        f32_array out({n_tok, rows});
        const uint8_t* wp = w.data();
        const float* xp = x.data();
        float* op = out.mutable_data();
        {
            py::gil_scoped_release nogil;
            const std::vector<block_q8k> a = quantize_activations(xp, n_tok, n);
            for (int64_t r = 0; r < rows; ++r) {
                if (single) {
                    for (int64_t t = 0; t < n_tok; ++t)
                        op[t * rows + r] = vec_dot_q8k(type, wp + r * rb, a.data() + t * (n / QK_K), n);
                } else {
                    vec_dot_q8k_multi(type, wp + r * rb, a.data(), n / QK_K, (int)n_tok, n, op + r, rows);
                }
            }
        }
        return out;
    });

    // The AMX tile path (vec_dot_q8k_tiles) of the same product: out (n_tok, rows); raises
    // ValueError where q8k_tiles_supported(type, n) is false.
    m.def("quant_dot_q8k_tiles", [](u8_array w, uint32_t type, f32_array x, int64_t n_tok) {
        const int64_t n = q8k_dot_row_length("dot_q8k_tiles", type, x.size(), n_tok);
        const int64_t rows = rows_in(type, w.size(), n);
        const int64_t rb = row_bytes(type, n);
        f32_array out({n_tok, rows});
        const uint8_t* wp = w.data();
        const float* xp = x.data();
        float* op = out.mutable_data();
        {
            py::gil_scoped_release nogil;
            const std::vector<block_q8k> a = quantize_activations(xp, n_tok, n);
            Q8kTiles tiles;
            q8k_tiles_prepare(a.data(), n / QK_K, (int)n_tok, n / QK_K, &tiles);
            vec_dot_q8k_tiles(type, wp, (size_t)rb, rows, tiles, n, op, rows);
        }
        return out;
    });
    m.def("quant_q8k_tiles_available", []() { return q8k_tiles_available(); });
    m.def("quant_q8k_tiles_supported", [](uint32_t type, int64_t n) { return q8k_tiles_supported(type, n); });

    // Dot against explicit Q8K blocks (d: [nb], qs: [nb, 256]); bsums are derived from qs.
    m.def("quant_dot_q8k_blocks", [](u8_array w, uint32_t type, f32_array d, i8_array qs) {
        const int64_t nb = d.size();
        if (qs.size() != nb * QK_K) throw std::invalid_argument("dot_q8k_blocks: qs must have shape (len(d), 256)");
        if (!type_has_q8k_dot(type))
            throw UnsupportedType(std::string("dot_q8k: no Q8K dot for tensor type ") + ggml_type_name(type));
        const int64_t n = nb * QK_K;
        std::vector<block_q8k> a((size_t)nb);
        for (int64_t b = 0; b < nb; ++b) {
            a[b].d = d.data()[b];
            std::memcpy(a[b].qs, qs.data() + b * QK_K, QK_K);
            for (int k = 0; k < QK_K / 16; ++k) {
                int s = 0;
                for (int i = 0; i < 16; ++i) {
                    if (a[b].qs[16 * k + i] == -128)
                        throw std::invalid_argument("dot_q8k_blocks: Q8K values must be in -127..127");
                    s += a[b].qs[16 * k + i];
                }
                a[b].bsums[k] = (int16_t)s;
            }
        }
        const int64_t rows = rows_in(type, w.size(), n);
        const int64_t rb = row_bytes(type, n);
        f32_array out(rows);
        const uint8_t* wp = w.data();
        float* op = out.mutable_data();
        {
            py::gil_scoped_release nogil;
            for (int64_t r = 0; r < rows; ++r) op[r] = vec_dot_q8k(type, wp + r * rb, a.data(), n);
        }
        return out;
    });

    m.def("quant_dot_f32", [](u8_array w, uint32_t type, f32_array x) {
        const int64_t n = x.size();
        if (!ggml_type_supported(type))
            throw UnsupportedType(std::string("dot_f32: unsupported tensor type ") + ggml_type_name(type));
        const int64_t rows = rows_in(type, w.size(), n);
        const int64_t rb = row_bytes(type, n);
        f32_array out(rows);
        const uint8_t* wp = w.data();
        const float* xp = x.data();
        float* op = out.mutable_data();
        {
            py::gil_scoped_release nogil;
            std::vector<float> scratch((size_t)n);
            for (int64_t r = 0; r < rows; ++r) op[r] = vec_dot_f32act(type, wp + r * rb, xp, n, scratch.data());
        }
        return out;
    });

    m.def("quant_canon_dot", [](f32_array a, f32_array b) {
        if (a.size() != b.size()) throw std::invalid_argument("canon_dot: vectors differ in length");
        const float* ap = a.data();
        const float* bp = b.data();
        const int64_t n = a.size();
        py::gil_scoped_release nogil;
        return canon_dot(ap, bp, n);
    });
    m.def("quant_canon_dot_ref", [](f32_array a, f32_array b) {
        if (a.size() != b.size()) throw std::invalid_argument("canon_dot_ref: vectors differ in length");
        return canon_dot_ref(a.data(), b.data(), a.size());
    });
    m.def("quant_canon_exp", [](f32_array x) {
        f32_array out(x.size());
        const float* xp = x.data();
        float* op = out.mutable_data();
        const int64_t n = x.size();
        py::gil_scoped_release nogil;
        for (int64_t i = 0; i < n; ++i) op[i] = canon_exp(xp[i]);
        return out;
    });
    m.def("quant_canon_silu", [](f32_array x) {
        f32_array out(x.size());
        const float* xp = x.data();
        float* op = out.mutable_data();
        const int64_t n = x.size();
        py::gil_scoped_release nogil;
        for (int64_t i = 0; i < n; ++i) op[i] = canon_silu(xp[i]);
        return out;
    });
    m.def("quant_f32_to_f16_bits", [](f32_array x) {
        u16_array out(x.size());
        const float* xp = x.data();
        uint16_t* op = out.mutable_data();
        const int64_t n = x.size();
        py::gil_scoped_release nogil;
        for (int64_t i = 0; i < n; ++i) op[i] = canon_f32_to_f16(xp[i]);
        return out;
    });
    m.def("quant_f16_bits_to_f32", [](u16_array h) {
        f32_array out(h.size());
        const uint16_t* hp = h.data();
        float* op = out.mutable_data();
        const int64_t n = h.size();
        py::gil_scoped_release nogil;
        for (int64_t i = 0; i < n; ++i) op[i] = canon_f16_to_f32(hp[i]);
        return out;
    });

    m.def("quant_simd_level", []() { return std::string(simd_level()); });
    m.def("quant_set_simd_level", [](const std::string& level) { set_simd_level(level.c_str()); });
    m.def("quant_simd_level_available", [](const std::string& level) { return simd_level_available(level.c_str()); });
}

}  // namespace qwen3moe::py_bind
