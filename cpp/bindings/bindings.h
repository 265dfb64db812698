// Thin pybind11 bindings: one bind_<area>() per area, called from module.cpp.
#pragma once
#include <pybind11/pybind11.h>

namespace qwen3moe::py_bind {
void bind_gguf(pybind11::module_& m);
void bind_quant(pybind11::module_& m);
void bind_model(pybind11::module_& m);
void bind_cuda(pybind11::module_& m);
}  // namespace qwen3moe::py_bind
