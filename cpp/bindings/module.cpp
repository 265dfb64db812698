// qwen3moe._core: the private compiled module. The public API is python/qwen3moe/__init__.py.
#include "bindings/bindings.h"
#include "runtime/errors.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
    m.doc() = "qwen3moe compiled core (private; use the qwen3moe package)";
    static py::exception<qwen3moe::GGUFError> gguf_error(m, "GGUFError", PyExc_ValueError);
    static py::exception<qwen3moe::UnsupportedType> unsupported(m, "UnsupportedTypeError", PyExc_ValueError);
    static py::exception<qwen3moe::OutOfMemory> oom(m, "OutOfMemoryError", PyExc_MemoryError);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const qwen3moe::GGUFError& e) {
            py::set_error(gguf_error, e.what());
        } catch (const qwen3moe::UnsupportedType& e) {
            py::set_error(unsupported, e.what());
        } catch (const qwen3moe::OutOfMemory& e) {
            py::set_error(oom, e.what());
        }
    });
    qwen3moe::py_bind::bind_gguf(m);
    qwen3moe::py_bind::bind_quant(m);
    qwen3moe::py_bind::bind_model(m);
    qwen3moe::py_bind::bind_cuda(m);
}
