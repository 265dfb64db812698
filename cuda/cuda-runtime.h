// Host-facing queries of the CUDA backend, callable from plain C++ (no CUDA headers).
// Without a CUDA build these are implemented in cpp/bindings/bind-cuda.cpp as "no GPU".
#pragma once
#include <string>

namespace qwen3moe::cuda {
int device_count();            // usable CUDA devices; 0 when no driver or no GPU
std::string device_name(int);  // e.g. "NVIDIA H200"
std::string driver_version();  // e.g. "13.0"
}  // namespace qwen3moe::cuda
