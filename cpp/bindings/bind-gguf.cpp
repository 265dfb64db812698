// Bindings for the GGUF reader: parse a file (or a bytes-like buffer) and return plain Python
// data (header fields, ordered (key, value) pairs, tensor tuples); python/qwen3moe/gguf.py
// turns it into GGUFInfo. Numeric metadata arrays become NumPy arrays of the stored dtype,
// string arrays lists of str (bytes where a string is not valid UTF-8), nested arrays lists.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings/bindings.h"
#include "gguf/gguf-reader.h"
#include "quant/ggml-types.h"

namespace py = pybind11;

namespace qwen3moe::py_bind {
namespace {

py::object string_to_py(const std::string& s) {
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "strict");
    if (o) return py::reinterpret_steal<py::object>(o);
    PyErr_Clear();
    return py::bytes(s);
}

template <class T, class Get>
py::object numeric_array(const std::vector<GGUFValue>& a, Get get) {
    py::array_t<T> out(static_cast<py::ssize_t>(a.size()));
    T* p = out.mutable_data();
    for (size_t k = 0; k < a.size(); ++k) p[k] = static_cast<T>(get(a[k]));
    return py::object(std::move(out));
}

py::object value_to_py(const GGUFValue& v) {
    auto U = [](const GGUFValue& e) { return e.u; };
    auto I = [](const GGUFValue& e) { return e.i; };
    auto F = [](const GGUFValue& e) { return e.f; };
    switch (v.type) {
        case GGUFType::UINT8: case GGUFType::UINT16: case GGUFType::UINT32: case GGUFType::UINT64:
            return py::int_(v.u);
        case GGUFType::INT8: case GGUFType::INT16: case GGUFType::INT32: case GGUFType::INT64:
            return py::int_(v.i);
        case GGUFType::FLOAT32: case GGUFType::FLOAT64: return py::float_(v.f);
        case GGUFType::BOOL: return py::bool_(v.u != 0);
        case GGUFType::STRING: return string_to_py(v.s);
        case GGUFType::ARRAY: break;
    }
    switch (v.elem_type) {
        case GGUFType::UINT8: return numeric_array<uint8_t>(v.arr, U);
        case GGUFType::INT8: return numeric_array<int8_t>(v.arr, I);
        case GGUFType::UINT16: return numeric_array<uint16_t>(v.arr, U);
        case GGUFType::INT16: return numeric_array<int16_t>(v.arr, I);
        case GGUFType::UINT32: return numeric_array<uint32_t>(v.arr, U);
        case GGUFType::INT32: return numeric_array<int32_t>(v.arr, I);
        case GGUFType::UINT64: return numeric_array<uint64_t>(v.arr, U);
        case GGUFType::INT64: return numeric_array<int64_t>(v.arr, I);
        case GGUFType::FLOAT32: return numeric_array<float>(v.arr, F);
        case GGUFType::FLOAT64: return numeric_array<double>(v.arr, F);
        case GGUFType::BOOL: return numeric_array<bool>(v.arr, U);
        case GGUFType::STRING:
        case GGUFType::ARRAY: {
            py::list out(v.arr.size());
            for (size_t k = 0; k < v.arr.size(); ++k) out[k] = value_to_py(v.arr[k]);
            return py::object(std::move(out));
        }
    }
    return py::none();
}

// {"version", "alignment", "data_offset", "file_size",
//  "metadata": [(key, value, type_name)], "tensors": [(name, type, type_name, shape, offset, nbytes)]}
py::dict file_to_py(const GGUFFile& f) {
    py::dict d;
    d["version"] = f.version();
    d["alignment"] = f.alignment();
    d["data_offset"] = f.data_offset();
    d["file_size"] = f.file_size();
    py::list meta;
    for (const std::string& key : f.keys()) {
        const GGUFValue* v = f.find(key);
        std::string tname = gguf_type_name(v->type);
        if (v->type == GGUFType::ARRAY) tname += std::string("[") + gguf_type_name(v->elem_type) + "]";
        meta.append(py::make_tuple(py::str(key), value_to_py(*v), tname));
    }
    d["metadata"] = meta;
    py::list tensors;
    for (const GGUFTensorInfo& t : f.tensors()) {
        py::tuple shape(t.n_dims);
        for (uint32_t k = 0; k < t.n_dims; ++k) shape[k] = py::int_(t.ne[k]);
        tensors.append(py::make_tuple(py::str(t.name), t.type, ggml_type_name(t.type), shape, t.offset, t.nbytes));
    }
    d["tensors"] = tensors;
    return d;
}

}  // namespace

void bind_gguf(py::module_& m) {
    m.def(
        "gguf_read",
        [](const std::string& path) {
            std::unique_ptr<GGUFFile> f;
            {
                py::gil_scoped_release nogil;
                f = GGUFFile::open(path);
            }
            return file_to_py(*f);
        },
        py::arg("path"), "Parse a GGUF file (memory-mapped); raises GGUFError on malformed input.");
    m.def(
        "gguf_read_bytes",
        [](py::buffer b) {
            py::buffer_info info = b.request();
            if (info.ndim != 1 || info.itemsize != 1 || (info.ndim == 1 && info.strides[0] != 1))
                throw std::invalid_argument("gguf_read_bytes: expected a contiguous bytes-like object");
            std::unique_ptr<GGUFFile> f;
            {
                py::gil_scoped_release nogil;
                f = GGUFFile::from_memory(static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size));
            }
            return file_to_py(*f);
        },
        py::arg("data"), "Parse a GGUF image held in a bytes-like object; raises GGUFError on malformed input.");
}

}  // namespace qwen3moe::py_bind
