// common.cu — error reporting of the CUDA backend (see common.cuh).
#include <stdexcept>
#include <string>

#include "cuda/common.cuh"
#include "runtime/errors.h"

namespace qwen3moe::cuda {

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
    // Clear a non-sticky error so the context stays usable for the next call.
    cudaGetLastError();
    std::string msg = std::string("CUDA error: ") + cudaGetErrorName(err) + " (" +
                      cudaGetErrorString(err) + ") in " + expr + " at " + file + ":" +
                      std::to_string(line);
    if (err == cudaErrorMemoryAllocation) throw OutOfMemory(msg);
    throw std::runtime_error(msg);
}

}  // namespace qwen3moe::cuda
