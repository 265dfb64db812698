// Device discovery. Linked with the static CUDA runtime: on a machine without a driver,
// cudaGetDeviceCount fails and we report zero devices instead of failing the import.
#include "cuda/cuda-runtime.h"

#include <cuda_runtime.h>

namespace qwen3moe::cuda {

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky error
        return 0;
    }
    return n;
}

std::string device_name(int dev) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        cudaGetLastError();
        return "";
    }
    return prop.name;
}

std::string driver_version() {
    int v = 0;
    if (cudaDriverGetVersion(&v) != cudaSuccess || v == 0) {
        cudaGetLastError();
        return "";
    }
    return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

}  // namespace qwen3moe::cuda
