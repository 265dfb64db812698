// cuda-backend.h — the CUDA implementation of the engine's stage-level Backend interface
// (model/backend.h), callable from plain C++ (no CUDA headers).
//
// At construction every weight matrix (by Tensor::id), every norm weight (by NormWeight::id)
// and the RoPE table are copied to the GPU once; the KV cache and the activation buffers live
// there too. Each Backend op launches the kernels of cuda/cuda-ops.h on the backend's own
// stream; nothing returns to the host inside a forward except copy_to_host (captures and
// logits). Results are bit-identical to the CPU backend (the kernels compute the canonical
// definitions of ARCHITECTURE.md section 2).
//
// Memory: the whole plan (weights + KV cache + first activation buffers) is checked against
// the device's free memory before anything is allocated; a shortfall or a failing allocation
// throws qwen3moe::OutOfMemory naming the sizes, and everything allocated so far is freed.
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "model/backend.h"
#include "model/qwen3moe-types.h"
#include "ops/rope.h"

namespace qwen3moe {

struct Weights;  // model/qwen3moe.h

namespace cuda {

struct CudaBackendOptions {
    int device = 0;  // CUDA device index
    size_t max_vram = 0;  // bytes the backend may use at most (0 = the device's free memory)
    // Weight upload progress: (bytes done, bytes total); called from the constructing thread.
    std::function<void(size_t, size_t)> progress;
};

// Parses "cuda" (device 0) or "cuda:N"; throws std::invalid_argument otherwise.
int parse_cuda_device(const std::string& device);

// The backend for one model. `rope` covers positions 0 .. n_ctx-1 (copied to the GPU).
// Throws OutOfMemory (sizes in the message), std::invalid_argument for a bad device index,
// std::runtime_error for CUDA failures.
std::unique_ptr<Backend> make_cuda_backend(const HParams& hp, ActMode mode, int n_ctx, const RopeTable& rope,
                                           const Weights& w, const CudaBackendOptions& opt);

}  // namespace cuda
}  // namespace qwen3moe
