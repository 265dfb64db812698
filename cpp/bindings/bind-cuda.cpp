// Bindings for CUDA discovery. Without a CUDA build every query reports "no GPU".
#include "bindings/bindings.h"

#include <pybind11/stl.h>

#ifdef QWEN3MOE_HAVE_CUDA
#include "cuda/cuda-runtime.h"
#endif

namespace qwen3moe::py_bind {

void bind_cuda(pybind11::module_& m) {
#ifdef QWEN3MOE_HAVE_CUDA
    m.attr("built_with_cuda") = true;
    m.def("cuda_device_count", &qwen3moe::cuda::device_count);
    m.def("cuda_device_name", &qwen3moe::cuda::device_name);
    m.def("cuda_driver_version", &qwen3moe::cuda::driver_version);
#else
    m.attr("built_with_cuda") = false;
    m.def("cuda_device_count", []() { return 0; });
    m.def("cuda_device_name", [](int) { return std::string(); });
    m.def("cuda_driver_version", []() { return std::string(); });
#endif
}

}  // namespace qwen3moe::py_bind
