// moe-combine.cu — one thread per output element (token t, dim d), ranks in order.
#include <stdexcept>

#include "cuda/cuda-ops.h"
#include "cuda/moe-combine.cuh"

namespace qwen3moe::cuda {

namespace {
__global__ void moe_combine_kernel(const float* __restrict__ y, const float* __restrict__ w,
                                   const float* residual, int64_t n_tok, int k, int64_t n, float* moe,
                                   float* out) {
    const int64_t total = n_tok * n;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / n, d = i % n;
        float acc = 0.0f;
        for (int r = 0; r < k; ++r) acc = canon_fma(w[t * k + r], y[(t * k + r) * n + d], acc);
        if (moe) moe[i] = acc;
        if (out) out[i] = residual[i] + acc;
    }
}
}  // namespace

void moe_combine_launch(const float* y, const float* w, const float* residual, int n_tok, int k, int64_t n,
                        float* moe, float* out, cudaStream_t stream) {
    if (n_tok < 0 || k <= 0 || n <= 0) throw std::invalid_argument("cuda moe_combine: bad shape");
    if (out && !residual) throw std::invalid_argument("cuda moe_combine: out needs a residual");
    if (n_tok == 0) return;
    const int64_t total = (int64_t)n_tok * n;
    const unsigned blocks = ceil_div_u(total, 256) < 4096 ? ceil_div_u(total, 256) : 4096;
    moe_combine_kernel<<<blocks, 256, 0, stream>>>(y, w, residual, n_tok, k, n, moe, out);
    Q3_CUDA_CHECK_LAUNCH();
}

void moe_combine(const float* y, const float* w, const float* residual, int n_tok, int k, int64_t n, float* moe,
                 float* out, void* stream) {
    moe_combine_launch(y, w, residual, n_tok, k, n, moe, out, to_stream(stream));
}

}  // namespace qwen3moe::cuda
