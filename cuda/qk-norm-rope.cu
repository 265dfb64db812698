// qk-norm-rope.cu — per-head RMSNorm + NEOX RoPE (+ cache store), one warp per (token, head);
// the normed head is staged in shared memory so the rotation can pair i with i + hd/2.
// Positions outside [0, n_pos) (which the host rejects before) poison the head with NaN and
// skip the cache store.
#include <stdexcept>
#include <string>

#include "cuda/qk-norm-rope.cuh"
#include "cuda/rms-norm.cuh"

namespace qwen3moe::cuda {

namespace {
constexpr int kHeadsPerBlock = 4;
constexpr int kMaxHeadDim = 256;

__global__ void norm_rope_kernel(NormRopeArgs p) {
    __shared__ float sh[kHeadsPerBlock][kMaxHeadDim];
    const int warp = threadIdx.x >> 5;
    const int64_t idx = (int64_t)blockIdx.x * kHeadsPerBlock + warp;  // token * n_heads + head
    if (idx >= (int64_t)p.n_tok * p.n_heads) return;                   // warp-uniform
    warp_norm_rope_head(p, idx, sh[warp]);
}

__global__ void kv_store_kernel(const float* __restrict__ x, const int32_t* __restrict__ pos, int n_tok,
                                int64_t row_len, void* cache, int64_t n_ctx, bool f16) {
    for (int64_t t = blockIdx.y; t < n_tok; t += gridDim.y) {
        const int64_t p = pos[t];
        if (p < 0 || p >= n_ctx) continue;  // never write outside the cache
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < row_len;
             i += (int64_t)gridDim.x * blockDim.x)
            cache_store(cache, f16, p * row_len + i, x[t * row_len + i]);
    }
}
}  // namespace

void norm_rope_launch(const NormRopeArgs& p, cudaStream_t stream) {
    if (p.hd <= 0 || p.hd % 2 != 0 || p.hd > kMaxHeadDim)
        throw std::invalid_argument("cuda norm_rope: head_dim " + std::to_string(p.hd) +
                                    " must be even and at most 256");
    if (p.n_tok < 0 || p.n_heads <= 0 || p.n_pos <= 0)
        throw std::invalid_argument("cuda norm_rope: bad shape");
    const int64_t n = (int64_t)p.n_tok * p.n_heads;
    if (n == 0) return;
    norm_rope_kernel<<<ceil_div_u(n, kHeadsPerBlock), kHeadsPerBlock * kWarp, 0, stream>>>(p);
    Q3_CUDA_CHECK_LAUNCH();
}

void kv_store_launch(const float* x, const int32_t* pos, int n_tok, int64_t row_len, void* cache,
                     int64_t n_ctx, bool cache_f16, cudaStream_t stream) {
    if (n_tok < 0 || row_len <= 0 || n_ctx <= 0) throw std::invalid_argument("cuda kv_store: bad shape");
    if (n_tok == 0) return;
    const unsigned gx = ceil_div_u(row_len, 256) < 64 ? ceil_div_u(row_len, 256) : 64;
    const unsigned gy = n_tok < 65535 ? (unsigned)n_tok : 65535u;
    kv_store_kernel<<<dim3(gx, gy), 256, 0, stream>>>(x, pos, n_tok, row_len, cache, n_ctx, cache_f16);
    Q3_CUDA_CHECK_LAUNCH();
}

void norm_rope(const NormRopeArgs& args, void* stream) { norm_rope_launch(args, to_stream(stream)); }
void kv_store(const float* x, const int32_t* pos, int n_tok, int64_t row_len, void* cache, int64_t n_ctx,
              bool cache_f16, void* stream) {
    kv_store_launch(x, pos, n_tok, row_len, cache, n_ctx, cache_f16, to_stream(stream));
}

}  // namespace qwen3moe::cuda
