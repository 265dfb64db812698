// quantize-q8k.cuh — the Q8K activation quantiser as a warp-level device function (so fused
// kernels can reuse it) and its launcher. Canonical definition (quant/quant.h): per 256-block
// amax = max|x| (NaN never wins); amax == 0 -> d = 0, q = 0; else iscale = canon_div(127, amax),
// q = clamp(rint(x * iscale), -127, 127) (NaN -> 0), d = canon_div(amax, 127); bsums = sums of 16 q.
#pragma once
#include "cuda/common.cuh"
#include "quant/blocks.h"

namespace qwen3moe::cuda {

// One warp quantises 256 values x (16-byte aligned); lane l handles x[8l .. 8l+7].
__device__ __forceinline__ void warp_quantize_q8k_block(const float* x, block_q8k* y) {
    const int lane = threadIdx.x & (kWarp - 1);
    const float4 v0 = reinterpret_cast<const float4*>(x)[2 * lane];
    const float4 v1 = reinterpret_cast<const float4*>(x)[2 * lane + 1];
    const float v[8] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) amax = fmaxf(amax, fabsf(v[i]));
    amax = warp_max(amax);
    int q[8];
    float d = 0.0f;
    if (amax == 0.0f) {
#pragma unroll
        for (int i = 0; i < 8; ++i) q[i] = 0;
    } else {
        const float iscale = canon_div(127.0f, amax);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const float r = canon_rint(v[i] * iscale);
            q[i] = r != r ? 0 : (int)fminf(127.0f, fmaxf(-127.0f, r));  // NaN -> 0 (as the CPU)
        }
        d = canon_div(amax, 127.0f);
    }
    uint32_t w0 = 0, w1 = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        w0 |= (uint32_t)(uint8_t)(int8_t)q[i] << (8 * i);
        w1 |= (uint32_t)(uint8_t)(int8_t)q[4 + i] << (8 * i);
    }
    uint32_t* qs = reinterpret_cast<uint32_t*>(y->qs + 8 * lane);  // 4-byte aligned
    qs[0] = w0;
    qs[1] = w1;
    int s = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) s += q[i];
    s += __shfl_xor_sync(kFullMask, s, 1);
    if ((lane & 1) == 0) y->bsums[lane >> 1] = (int16_t)s;
    if (lane == 0) y->d = d;
}

void quantize_q8k_launch(const float* x, block_q8k* y, int64_t n_rows, int64_t n, cudaStream_t stream);

}  // namespace qwen3moe::cuda
