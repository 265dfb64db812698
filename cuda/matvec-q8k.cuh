// matvec-q8k.cuh — weight-row x Q8K-activation dot products on the GPU.
//
// Canonical definition (quant/dot-canon.h): per 256-value activation block b an exact int32
// part and the float contribution c_b (canon_block_q4k / canon_block_q6k / canon_block_q8_0);
// the row is the 32-lane canonical sum of the c_b (lane b % 32 adds c_b in ascending b from
// +0.0f, then the warp tree).
//
// Work split: one warp per output row. The warp handles 4 activation blocks per step, one
// group of 8 lanes per block; each lane computes the integer sums of 1/8 of the block with
// __dp4a (16-byte loads for Q4_K/Q5_K; Q6_K/Q8_0/Q4_0 blocks are only 2-byte aligned and use
// 2-byte loads), the group reduces them exactly, all lanes of the group evaluate c_b with the
// shared dot-canon.h expression, and lane b % 32 adds it to its partial.
#pragma once
#include "cuda/common.cuh"
#include "cuda/cuda-ops.h"
#include "quant/blocks.h"
#include "quant/dot-canon.h"
#include "quant/ggml-types.h"

namespace qwen3moe::cuda {

// 4 bytes from a 2-byte aligned address.
__device__ __forceinline__ int ld_i32_a2(const uint8_t* p) {
    const uint16_t* h = reinterpret_cast<const uint16_t*>(p);
    return (int)((uint32_t)h[0] | ((uint32_t)h[1] << 16));
}

// 4 activation bytes qs[i .. i+3] (i % 4 == 0) of a Q8K block as one int.
__device__ __forceinline__ int ld_act4(const block_q8k* a, int i) {
    return *reinterpret_cast<const int*>(a->qs + i);
}

// Sum over the 8 lanes of a group (exact).
__device__ __forceinline__ int group8_sum(int v) {
    v += __shfl_xor_sync(kFullMask, v, 4);
    v += __shfl_xor_sync(kFullMask, v, 2);
    v += __shfl_xor_sync(kFullMask, v, 1);
    return v;
}

// Per-type block contribution: `wb` points at the weight bytes covering activation block `a`
// (256 values), k = lane index in the 8-lane group. Every lane of the group returns c_b.
template <uint32_t T> struct Q8KBlock;

template <> struct Q8KBlock<GGML_TYPE_Q4_K> {
    static constexpr int kBytes = sizeof(block_q4_K);  // per 256 values
    __device__ static float contrib(const uint8_t* wb, const block_q8k* a, int k) {
        const block_q4_K* w = reinterpret_cast<const block_q4_K*>(wb);
        const int c = k >> 1, h = k & 1;  // qs chunk (sub-blocks 2c, 2c+1), half of it
        const int4 qv = *reinterpret_cast<const int4*>(w->qs + 32 * c + 16 * h);
        const int q4[4] = {qv.x, qv.y, qv.z, qv.w};
        const int lo0 = 64 * c + 16 * h, hi0 = lo0 + 32;  // first value of each 16-run
        int dlo = 0, dhi = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            dlo = __dp4a(q4[i] & 0x0f0f0f0f, ld_act4(a, lo0 + 4 * i), dlo);
            dhi = __dp4a((q4[i] >> 4) & 0x0f0f0f0f, ld_act4(a, hi0 + 4 * i), dhi);
        }
        uint8_t sc_lo, m_lo, sc_hi, m_hi;
        k4_scale_min(2 * c, w->scales, &sc_lo, &m_lo);
        k4_scale_min(2 * c + 1, w->scales, &sc_hi, &m_hi);
        int isum = (int)sc_lo * dlo + (int)sc_hi * dhi;
        int msum = (int)m_lo * a->bsums[lo0 / 16] + (int)m_hi * a->bsums[hi0 / 16];
        isum = group8_sum(isum);
        msum = group8_sum(msum);
        return canon_block_q4k(a->d, canon_f16_to_f32(w->d), canon_f16_to_f32(w->dmin), isum, msum);
    }
};

template <> struct Q8KBlock<GGML_TYPE_Q5_K> {
    static constexpr int kBytes = sizeof(block_q5_K);
    __device__ static float contrib(const uint8_t* wb, const block_q8k* a, int k) {
        const block_q5_K* w = reinterpret_cast<const block_q5_K*>(wb);
        const int c = k >> 1, h = k & 1;
        const int4 qv = *reinterpret_cast<const int4*>(w->qs + 32 * c + 16 * h);
        const int4 hv = *reinterpret_cast<const int4*>(w->qh + 16 * h);  // 5th bits of l = 16h..16h+15
        const int q4[4] = {qv.x, qv.y, qv.z, qv.w};
        const int h4[4] = {hv.x, hv.y, hv.z, hv.w};
        const int lo0 = 64 * c + 16 * h, hi0 = lo0 + 32;
        int dlo = 0, dhi = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int blo = ((h4[i] >> (2 * c)) & 0x01010101) << 4;      // bit j = 2c
            const int bhi = ((h4[i] >> (2 * c + 1)) & 0x01010101) << 4;  // bit j = 2c+1
            dlo = __dp4a((q4[i] & 0x0f0f0f0f) | blo, ld_act4(a, lo0 + 4 * i), dlo);
            dhi = __dp4a(((q4[i] >> 4) & 0x0f0f0f0f) | bhi, ld_act4(a, hi0 + 4 * i), dhi);
        }
        uint8_t sc_lo, m_lo, sc_hi, m_hi;
        k4_scale_min(2 * c, w->scales, &sc_lo, &m_lo);
        k4_scale_min(2 * c + 1, w->scales, &sc_hi, &m_hi);
        int isum = (int)sc_lo * dlo + (int)sc_hi * dhi;
        int msum = (int)m_lo * a->bsums[lo0 / 16] + (int)m_hi * a->bsums[hi0 / 16];
        isum = group8_sum(isum);
        msum = group8_sum(msum);
        return canon_block_q4k(a->d, canon_f16_to_f32(w->d), canon_f16_to_f32(w->dmin), isum, msum);
    }
};

template <> struct Q8KBlock<GGML_TYPE_Q6_K> {
    static constexpr int kBytes = sizeof(block_q6_K);
    // Lane k: half hh = k/4, group s = k%4: values 128hh + 32s + l (l < 32), sub-blocks
    // 8hh + 2s (l < 16) and 8hh + 2s + 1 (l >= 16).
    __device__ static float contrib(const uint8_t* wb, const block_q8k* a, int k) {
        const block_q6_K* w = reinterpret_cast<const block_q6_K*>(wb);
        const int hh = k >> 2, s = k & 3;
        const uint8_t* ql = w->ql + 64 * hh + 32 * (s & 1);
        const uint8_t* qh = w->qh + 32 * hh;
        const int shift_l = 4 * (s >> 1), shift_h = 2 * s;
        const int v0 = 128 * hh + 32 * s;
        int d0 = 0, d1 = 0;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const int lw = ld_i32_a2(ql + 4 * i);
            const int hw = ld_i32_a2(qh + 4 * i);
            const int q = ((lw >> shift_l) & 0x0f0f0f0f) | (((hw >> shift_h) & 0x03030303) << 4);
            if (i < 4)
                d0 = __dp4a(q, ld_act4(a, v0 + 4 * i), d0);
            else
                d1 = __dp4a(q, ld_act4(a, v0 + 4 * i), d1);
        }
        const int sb = 8 * hh + 2 * s;
        // stored q is value + 32: subtract 32 * (sum of the 16 activations) per sub-block.
        int isum = (int)w->scales[sb] * (d0 - 32 * (int)a->bsums[sb]) +
                   (int)w->scales[sb + 1] * (d1 - 32 * (int)a->bsums[sb + 1]);
        isum = group8_sum(isum);
        return canon_block_q6k(a->d, canon_f16_to_f32(w->d), isum);
    }
};

template <> struct Q8KBlock<GGML_TYPE_Q8_0> {
    static constexpr int kBytes = 8 * sizeof(block_q8_0);
    __device__ static float contrib(const uint8_t* wb, const block_q8k* a, int k) {
        const block_q8_0* w = reinterpret_cast<const block_q8_0*>(wb) + k;
        int isum = 0;
#pragma unroll
        for (int i = 0; i < 8; ++i) isum = __dp4a(ld_i32_a2(reinterpret_cast<const uint8_t*>(w->qs) + 4 * i),
                                                  ld_act4(a, 32 * k + 4 * i), isum);
        return gather8(a->d, canon_f16_to_f32(w->d), isum);
    }
    // c_b = canon_block_q8_0 over the 8 (d_k, isum_k) of the group, in order k = 0..7.
    __device__ static float gather8(float da, float dk, int isum) {
        float dks[8];
        int32_t iss[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            dks[j] = __shfl_sync(kFullMask, dk, j, 8);
            iss[j] = __shfl_sync(kFullMask, isum, j, 8);
        }
        return canon_block_q8_0(da, dks, iss);
    }
};

template <> struct Q8KBlock<GGML_TYPE_Q4_0> {
    static constexpr int kBytes = 8 * sizeof(block_q4_0);
    __device__ static float contrib(const uint8_t* wb, const block_q8k* a, int k) {
        const block_q4_0* w = reinterpret_cast<const block_q4_0*>(wb) + k;
        int s = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int q = ld_i32_a2(w->qs + 4 * i);
            s = __dp4a(q & 0x0f0f0f0f, ld_act4(a, 32 * k + 4 * i), s);
            s = __dp4a((q >> 4) & 0x0f0f0f0f, ld_act4(a, 32 * k + 16 + 4 * i), s);
        }
        // stored nibble is value + 8.
        const int isum = s - 8 * ((int)a->bsums[2 * k] + (int)a->bsums[2 * k + 1]);
        return Q8KBlock<GGML_TYPE_Q8_0>::gather8(a->d, canon_f16_to_f32(w->d), isum);
    }
};

// The canonical row: one warp computes dot(weight row `wrow` (nb blocks of 256), a[0..nb)).
// Every lane returns the row value.
template <uint32_t T>
__device__ __forceinline__ float warp_row_dot_q8k(const uint8_t* wrow, const block_q8k* a, int64_t nb) {
    const int lane = threadIdx.x & (kWarp - 1);
    const int g = lane >> 3, k = lane & 7;
    float p = 0.0f;
    for (int64_t b0 = 0; b0 < nb; b0 += 4) {
        // Groups past the end compute a clamped block (all lanes stay converged for the
        // shuffles) and their value is dropped.
        const int64_t b = b0 + g < nb ? b0 + g : nb - 1;
        const float c = Q8KBlock<T>::contrib(wrow + b * Q8KBlock<T>::kBytes, a + b, k);
#pragma unroll
        for (int gg = 0; gg < 4; ++gg) {
            const float cg = __shfl_sync(kFullMask, c, 8 * gg);
            if (b0 + gg < nb && lane == (int)((b0 + gg) % kWarp)) p = p + cg;
        }
    }
    return warp_tree_sum(p);
}

void matvec_q8k_launch(const MatvecArgs& args, const block_q8k* a, cudaStream_t stream);

}  // namespace qwen3moe::cuda
