// Bindings for the model area (filled in by its owner).
#include "bindings/bindings.h"

namespace qwen3moe::py_bind {
void bind_model(pybind11::module_& m) { (void)m; }
}  // namespace qwen3moe::py_bind
