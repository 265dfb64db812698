// Bindings for the quant area (filled in by its owner).
#include "bindings/bindings.h"

namespace qwen3moe::py_bind {
void bind_quant(pybind11::module_& m) { (void)m; }
}  // namespace qwen3moe::py_bind
