// Error types of the C++ core. The bindings map them to Python exceptions:
//   GGUFError        -> qwen3moe.GGUFError        (malformed or hostile GGUF file)
//   UnsupportedType  -> qwen3moe.UnsupportedTypeError (a tensor type we cannot compute with)
//   OutOfMemory      -> qwen3moe.OutOfMemoryError (device/host memory plan does not fit)
//   Cancelled        -> the Python exception pending in the calling thread (KeyboardInterrupt)
//   std::invalid_argument -> ValueError, std::out_of_range -> IndexError (pybind11 defaults)
#pragma once
#include <stdexcept>
#include <string>

namespace qwen3moe {

struct GGUFError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct UnsupportedType : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct OutOfMemory : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A forward stopped by its cancel check (e.g. Ctrl-C); the model is as before the call.
struct Cancelled : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace qwen3moe
