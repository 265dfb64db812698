// common.cuh — shared device helpers of the CUDA backend: error checking and the canonical
// warp reductions.
//
// Errors never abort: Q3_CUDA_CHECK turns a failing CUDA call into a C++ exception carrying
// the CUDA error text (qwen3moe::OutOfMemory for allocation failures, std::runtime_error
// otherwise), which the bindings map to Python exceptions.
//
// warp_tree_sum is the canonical tree of ops/canon.h (canon_tree32): for s = 16, 8, 4, 2, 1
// every lane l does p = p + p[l+s]. With __shfl_down_sync, lane 0 ends with exactly the value
// canon_tree32 computes from the 32 lane partials; the result is broadcast to all lanes.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ops/canon.h"

// Host+device qualifiers for static member functions of the kernels' helper structs (Q3_HD of
// ops/canon.h carries `static` for free functions, which a member declaration cannot repeat).
#define Q3_HDM __host__ __device__ __forceinline__

namespace qwen3moe::cuda {

// Throws OutOfMemory (allocation failures) or std::runtime_error naming the call and site.
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);

#define Q3_CUDA_CHECK(expr)                                                              \
    do {                                                                                 \
        const cudaError_t q3_err_ = (expr);                                              \
        if (q3_err_ != cudaSuccess)                                                      \
            ::qwen3moe::cuda::throw_cuda_error(q3_err_, #expr, __FILE__, __LINE__);      \
    } while (0)

// After a kernel launch: reports launch-configuration errors (not asynchronous faults).
#define Q3_CUDA_CHECK_LAUNCH() Q3_CUDA_CHECK(cudaGetLastError())

inline cudaStream_t to_stream(void* s) { return static_cast<cudaStream_t>(s); }

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarp = 32;

// Canonical 32-lane tree sum of the lane partials p (lane l holds p[l]); every lane returns
// the tree result.
__device__ __forceinline__ float warp_tree_sum(float p) {
#pragma unroll
    for (int s = kCanonLanes / 2; s >= 1; s >>= 1) p = p + __shfl_down_sync(kFullMask, p, s);
    return __shfl_sync(kFullMask, p, 0);
}

// Max over the warp (exact in any order); NaN-free inputs assumed (fmaxf drops NaN).
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int s = 16; s >= 1; s >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, s));
    return v;
}

// Integer sum over the warp (exact; any order).
__device__ __forceinline__ int warp_sum_int(int v) {
#pragma unroll
    for (int s = 16; s >= 1; s >>= 1) v += __shfl_xor_sync(kFullMask, v, s);
    return v;
}

// canon_dot(a, b, n) computed by one warp: lane l accumulates i = l, l+32, ... in ascending i
// from +0.0f, then the canonical tree. All lanes return the result.
__device__ __forceinline__ float warp_canon_dot(const float* a, const float* b, int64_t n) {
    const int lane = threadIdx.x & (kWarp - 1);
    float p = 0.0f;
    for (int64_t i = lane; i < n; i += kWarp) p = canon_fma(a[i], b[i], p);
    return warp_tree_sum(p);
}

// canon_f16_to_f32 with the hardware conversion on the device: exact for every non-NaN f16
// (all f16 values, subnormals and infinities included, are f32 values); NaN bit patterns get
// canon_f16_to_f32's bits for them (sign | 0x7f800000 | mant << 13, its exponent-31 branch),
// written out here so no subnormal loop is compiled in. Host code: canon_f16_to_f32.
Q3_HD float f16_to_f32(uint16_t h) {
#if defined(__CUDA_ARCH__)
    const float hw = __half2float(__ushort_as_half(h));
    const uint32_t nan_bits = ((uint32_t)(h & 0x8000u) << 16) | 0x7f800000u | ((uint32_t)(h & 0x3ffu) << 13);
    return ((h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0u) ? __uint_as_float(nan_bits) : hw;
#else
    return canon_f16_to_f32(h);
#endif
}

// Grid-size helper: ceil(a / b) as an unsigned grid dimension.
inline unsigned ceil_div_u(int64_t a, int64_t b) { return (unsigned)((a + b - 1) / b); }

}  // namespace qwen3moe::cuda
