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
//
// Each lane's work is split into load() (its weight slice, loaded and decoded: bytes, scales)
// and lane_w() (the integer sums with one activation block); lane() = lane_w(load()). The
// multi-token form (warp_rows_dot_q8k) calls load() once per weight block for several
// activation rows; the host model runs lane(), so the split itself is tested on the CPU.
#pragma once
#include <cstring>

#include "cuda/common.cuh"
#include "cuda/cuda-ops.h"
#include "cuda/thread-dots.cuh"
#include "quant/blocks.h"
#include "quant/dot-canon.h"
#include "quant/ggml-types.h"

namespace qwen3moe::cuda {

// ---- loads and the byte dot, written once for device and host (the host form runs the
// same lane decomposition in matvec_q8k_host_model, which tests check on machines without GPU;
// ld_16, ld_i32_a4 and ld_i32_a2: thread-dots.cuh).

// 4 activation bytes qs[i .. i+3] (i % 4 == 0) of a Q8K block as one int.
Q3_HD int ld_act4(const block_q8k* a, int i) { return ld_i32_a4(reinterpret_cast<const uint8_t*>(a->qs) + i); }

// c + sum of the 4 products of the signed bytes of a and b (exact).
Q3_HD int dp4a_s8(int a, int b, int c) {
#if defined(__CUDA_ARCH__)
    return __dp4a(a, b, c);
#else
    for (int i = 0; i < 4; ++i) c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
#endif
}

// Integer sums of one lane (k = 0..7 of the 8-lane group) over its 1/8 of an activation block.
struct LaneSums {
    int32_t isum;  // part of the block's isum (or isum_k of weight block k for Q8_0/Q4_0)
    int32_t msum;  // part of the block's msum (Q4_K/Q5_K; 0 otherwise)
};

// Per-type lane decomposition. `wb` points at the weight bytes covering activation block `a`
// (256 values). K-quants: the group's lane sums add up to the block's (isum, msum) and
// finish() gives c_b. Q8_0/Q4_0 (kPerLaneScale): lane k owns weight block k; c_b is
// canon_block_q8_0 over the lanes' (lane_d, isum) in order k = 0..7.
template <uint32_t T> struct Q8KBlock;

template <> struct Q8KBlock<GGML_TYPE_Q4_K> {
    static constexpr int kBytes = sizeof(block_q4_K);  // weight bytes per 256 values
    static constexpr bool kPerLaneScale = false;
    // Lane k: qs chunk c = k/2 (sub-blocks 2c in the low nibbles, 2c+1 in the high nibbles),
    // half h = k%2: values 64c + 16h + i (low) and 64c + 32 + 16h + i (high), i < 16.
    // The lane's weight data, loaded and decoded once (shared by every activation row).
    struct W {
        int q4[4];                         // the lane's 16 qs bytes
        uint8_t sc_lo, m_lo, sc_hi, m_hi;  // 6-bit scales/mins of sub-blocks 2c and 2c+1
    };
    Q3_HDM static W load(const uint8_t* wb, int k) {
        const block_q4_K* w = reinterpret_cast<const block_q4_K*>(wb);
        const int c = k >> 1, h = k & 1;
        W r;
        ld_16(w->qs + 32 * c + 16 * h, r.q4);
        k4_scale_min(2 * c, w->scales, &r.sc_lo, &r.m_lo);
        k4_scale_min(2 * c + 1, w->scales, &r.sc_hi, &r.m_hi);
        return r;
    }
    Q3_HDM static LaneSums lane_w(const W& w, const block_q8k* a, int k) {
        const int c = k >> 1, h = k & 1;
        const int lo0 = 64 * c + 16 * h, hi0 = lo0 + 32;  // first value of each 16-run
        int dlo = 0, dhi = 0;
        for (int i = 0; i < 4; ++i) {
            dlo = dp4a_s8(w.q4[i] & 0x0f0f0f0f, ld_act4(a, lo0 + 4 * i), dlo);
            dhi = dp4a_s8((w.q4[i] >> 4) & 0x0f0f0f0f, ld_act4(a, hi0 + 4 * i), dhi);
        }
        return {(int)w.sc_lo * dlo + (int)w.sc_hi * dhi,
                (int)w.m_lo * a->bsums[lo0 / 16] + (int)w.m_hi * a->bsums[hi0 / 16]};
    }
    Q3_HDM static LaneSums lane(const uint8_t* wb, const block_q8k* a, int k) { return lane_w(load(wb, k), a, k); }
    Q3_HDM static float finish(const uint8_t* wb, const block_q8k* a, int32_t isum, int32_t msum) {
        const block_q4_K* w = reinterpret_cast<const block_q4_K*>(wb);
        return canon_block_q4k(a->d, f16_to_f32(w->d), f16_to_f32(w->dmin), isum, msum);
    }
};

template <> struct Q8KBlock<GGML_TYPE_Q5_K> {
    static constexpr int kBytes = sizeof(block_q5_K);
    static constexpr bool kPerLaneScale = false;
    // As Q4_K; the 5th bit of value 32j + l is bit j of qh[l], and this lane's values have
    // l = 16h + i: qh[16h .. 16h+15], bit 2c (low run) and bit 2c+1 (high run).
    struct W {
        int lo[4], hi[4];                  // the lane's 5-bit values (low run, high run), 4 per int
        uint8_t sc_lo, m_lo, sc_hi, m_hi;  // 6-bit scales/mins of sub-blocks 2c and 2c+1
    };
    Q3_HDM static W load(const uint8_t* wb, int k) {
        const block_q5_K* w = reinterpret_cast<const block_q5_K*>(wb);
        const int c = k >> 1, h = k & 1;
        int q4[4], h4[4];
        ld_16(w->qs + 32 * c + 16 * h, q4);
        ld_16(w->qh + 16 * h, h4);
        W r;
        for (int i = 0; i < 4; ++i) {
            const int blo = ((h4[i] >> (2 * c)) & 0x01010101) << 4;
            const int bhi = ((h4[i] >> (2 * c + 1)) & 0x01010101) << 4;
            r.lo[i] = (q4[i] & 0x0f0f0f0f) | blo;
            r.hi[i] = ((q4[i] >> 4) & 0x0f0f0f0f) | bhi;
        }
        k4_scale_min(2 * c, w->scales, &r.sc_lo, &r.m_lo);
        k4_scale_min(2 * c + 1, w->scales, &r.sc_hi, &r.m_hi);
        return r;
    }
    Q3_HDM static LaneSums lane_w(const W& w, const block_q8k* a, int k) {
        const int c = k >> 1, h = k & 1;
        const int lo0 = 64 * c + 16 * h, hi0 = lo0 + 32;
        int dlo = 0, dhi = 0;
        for (int i = 0; i < 4; ++i) {
            dlo = dp4a_s8(w.lo[i], ld_act4(a, lo0 + 4 * i), dlo);
            dhi = dp4a_s8(w.hi[i], ld_act4(a, hi0 + 4 * i), dhi);
        }
        return {(int)w.sc_lo * dlo + (int)w.sc_hi * dhi,
                (int)w.m_lo * a->bsums[lo0 / 16] + (int)w.m_hi * a->bsums[hi0 / 16]};
    }
    Q3_HDM static LaneSums lane(const uint8_t* wb, const block_q8k* a, int k) { return lane_w(load(wb, k), a, k); }
    Q3_HDM static float finish(const uint8_t* wb, const block_q8k* a, int32_t isum, int32_t msum) {
        const block_q5_K* w = reinterpret_cast<const block_q5_K*>(wb);
        return canon_block_q4k(a->d, f16_to_f32(w->d), f16_to_f32(w->dmin), isum, msum);
    }
};

template <> struct Q8KBlock<GGML_TYPE_Q6_K> {
    static constexpr int kBytes = sizeof(block_q6_K);
    static constexpr bool kPerLaneScale = false;
    // Lane k: half hh = k/4, group s = k%4: values 128hh + 32s + l (l < 32); low 4 bits in
    // ql[64hh + 32(s&1) + l] (nibble s>>1), high 2 bits in qh[32hh + l] (bits 2s); sub-blocks
    // 8hh + 2s (l < 16) and 8hh + 2s + 1 (l >= 16). Blocks are only 2-byte aligned.
    struct W {
        int q[8];       // the lane's 32 stored 6-bit values (value + 32), 4 per int
        int sc0, sc1;   // scales of sub-blocks sb and sb + 1
    };
    Q3_HDM static W load(const uint8_t* wb, int k) {
        const block_q6_K* w = reinterpret_cast<const block_q6_K*>(wb);
        const int hh = k >> 2, s = k & 3;
        const uint8_t* ql = w->ql + 64 * hh + 32 * (s & 1);
        const uint8_t* qh = w->qh + 32 * hh;
        const int shift_l = 4 * (s >> 1), shift_h = 2 * s;
        W r;
        for (int i = 0; i < 8; ++i) {
            const int lw = ld_i32_a2(ql + 4 * i);
            const int hw = ld_i32_a2(qh + 4 * i);
            r.q[i] = ((lw >> shift_l) & 0x0f0f0f0f) | (((hw >> shift_h) & 0x03030303) << 4);
        }
        const int sb = 8 * hh + 2 * s;
        r.sc0 = (int)w->scales[sb];
        r.sc1 = (int)w->scales[sb + 1];
        return r;
    }
    Q3_HDM static LaneSums lane_w(const W& w, const block_q8k* a, int k) {
        const int hh = k >> 2, s = k & 3;
        const int v0 = 128 * hh + 32 * s;
        int d0 = 0, d1 = 0;
        for (int i = 0; i < 8; ++i) {
            if (i < 4)
                d0 = dp4a_s8(w.q[i], ld_act4(a, v0 + 4 * i), d0);
            else
                d1 = dp4a_s8(w.q[i], ld_act4(a, v0 + 4 * i), d1);
        }
        const int sb = 8 * hh + 2 * s;
        // stored q is value + 32: subtract 32 * (sum of the 16 activations) per sub-block.
        return {w.sc0 * (d0 - 32 * (int)a->bsums[sb]) + w.sc1 * (d1 - 32 * (int)a->bsums[sb + 1]), 0};
    }
    Q3_HDM static LaneSums lane(const uint8_t* wb, const block_q8k* a, int k) { return lane_w(load(wb, k), a, k); }
    Q3_HDM static float finish(const uint8_t* wb, const block_q8k* a, int32_t isum, int32_t) {
        const block_q6_K* w = reinterpret_cast<const block_q6_K*>(wb);
        return canon_block_q6k(a->d, f16_to_f32(w->d), isum);
    }
};

template <> struct Q8KBlock<GGML_TYPE_Q8_0> {
    static constexpr int kBytes = 8 * sizeof(block_q8_0);
    static constexpr bool kPerLaneScale = true;
    struct W {
        int q[8];  // weight block k's 32 values, 4 per int
    };
    Q3_HDM static W load(const uint8_t* wb, int k) {
        const block_q8_0* w = reinterpret_cast<const block_q8_0*>(wb) + k;
        const uint8_t* q = reinterpret_cast<const uint8_t*>(w->qs);
        W r;
        for (int i = 0; i < 8; ++i) r.q[i] = ld_i32_a2(q + 4 * i);
        return r;
    }
    Q3_HDM static LaneSums lane_w(const W& w, const block_q8k* a, int k) {
        int isum = 0;
        for (int i = 0; i < 8; ++i) isum = dp4a_s8(w.q[i], ld_act4(a, 32 * k + 4 * i), isum);
        return {isum, 0};
    }
    Q3_HDM static LaneSums lane(const uint8_t* wb, const block_q8k* a, int k) { return lane_w(load(wb, k), a, k); }
    Q3_HDM static float lane_d(const uint8_t* wb, int k) {
        return f16_to_f32((reinterpret_cast<const block_q8_0*>(wb) + k)->d);
    }
};

template <> struct Q8KBlock<GGML_TYPE_Q4_0> {
    static constexpr int kBytes = 8 * sizeof(block_q4_0);
    static constexpr bool kPerLaneScale = true;
    // Value l = (qs[l] & 15) - 8, value 16 + l = (qs[l] >> 4) - 8.
    struct W {
        int q[4];  // weight block k's 16 qs bytes (two nibbles each)
    };
    Q3_HDM static W load(const uint8_t* wb, int k) {
        const block_q4_0* w = reinterpret_cast<const block_q4_0*>(wb) + k;
        W r;
        for (int i = 0; i < 4; ++i) r.q[i] = ld_i32_a2(w->qs + 4 * i);
        return r;
    }
    Q3_HDM static LaneSums lane_w(const W& w, const block_q8k* a, int k) {
        int s = 0;
        for (int i = 0; i < 4; ++i) {
            s = dp4a_s8(w.q[i] & 0x0f0f0f0f, ld_act4(a, 32 * k + 4 * i), s);
            s = dp4a_s8((w.q[i] >> 4) & 0x0f0f0f0f, ld_act4(a, 32 * k + 16 + 4 * i), s);
        }
        // stored nibble is value + 8.
        return {s - 8 * ((int)a->bsums[2 * k] + (int)a->bsums[2 * k + 1]), 0};
    }
    Q3_HDM static LaneSums lane(const uint8_t* wb, const block_q8k* a, int k) { return lane_w(load(wb, k), a, k); }
    Q3_HDM static float lane_d(const uint8_t* wb, int k) {
        return f16_to_f32((reinterpret_cast<const block_q4_0*>(wb) + k)->d);
    }
};

// Sum over the 8 lanes of a group (exact).
__device__ __forceinline__ int group8_sum(int v) {
    v += __shfl_xor_sync(kFullMask, v, 4);
    v += __shfl_xor_sync(kFullMask, v, 2);
    v += __shfl_xor_sync(kFullMask, v, 1);
    return v;
}

// c_b of activation block a computed by an 8-lane group (k = lane in group); every lane of
// the group returns it.
template <uint32_t T>
__device__ __forceinline__ float group_block_contrib_w(const typename Q8KBlock<T>::W& w, const uint8_t* wb,
                                                       const block_q8k* a, int k) {
    const LaneSums ls = Q8KBlock<T>::lane_w(w, a, k);
    if constexpr (Q8KBlock<T>::kPerLaneScale) {
        const float dk = Q8KBlock<T>::lane_d(wb, k);
        float dks[8];
        int32_t iss[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            dks[j] = __shfl_sync(kFullMask, dk, j, 8);
            iss[j] = __shfl_sync(kFullMask, ls.isum, j, 8);
        }
        return canon_block_q8_0(a->d, dks, iss);
    } else {
        return Q8KBlock<T>::finish(wb, a, group8_sum(ls.isum), group8_sum(ls.msum));
    }
}

template <uint32_t T>
__device__ __forceinline__ float group_block_contrib(const uint8_t* wb, const block_q8k* a, int k) {
    return group_block_contrib_w<T>(Q8KBlock<T>::load(wb, k), wb, a, k);
}

// The same c_b with the 8 lanes run one after another by one thread: the host model
// (matvec_q8k_host_model) and the decode kernels' one-thread-per-block dots (decode-common.cuh).
template <uint32_t T> Q3_HDM float host_block_contrib(const uint8_t* wb, const block_q8k* a) {
    if constexpr (Q8KBlock<T>::kPerLaneScale) {
        float dks[8];
        int32_t iss[8];
        for (int k = 0; k < 8; ++k) {
            dks[k] = Q8KBlock<T>::lane_d(wb, k);
            iss[k] = Q8KBlock<T>::lane(wb, a, k).isum;
        }
        return canon_block_q8_0(a->d, dks, iss);
    } else {
        int32_t isum = 0, msum = 0;
        for (int k = 0; k < 8; ++k) {
            const LaneSums ls = Q8KBlock<T>::lane(wb, a, k);
            isum += ls.isum;
            msum += ls.msum;
        }
        return Q8KBlock<T>::finish(wb, a, isum, msum);
    }
}

// c_b of a Q4_K block (wb 16-byte aligned) with a Q8K block by one thread: the integers of
// thread_q4k_sums (thread-dots.cuh) with canon_block_q4k, the same bits as host_block_contrib.
Q3_HDM float thread_q4k_contrib(const uint8_t* wb, const block_q8k* a) {
    const block_q4_K* w = reinterpret_cast<const block_q4_K*>(wb);
    int32_t isum, msum;
    thread_q4k_sums(wb, a, &isum, &msum);
    return canon_block_q4k(a->d, f16_to_f32(w->d), f16_to_f32(w->dmin), isum, msum);
}

// c_b of a Q6_K block (2-byte aligned) with a Q8K block by one thread: the integer of
// thread_q6k_isum (thread-dots.cuh) with canon_block_q6k, the same bits as host_block_contrib.
Q3_HDM float thread_q6k_contrib(const uint8_t* wb, const block_q8k* a) {
    const block_q6_K* w = reinterpret_cast<const block_q6_K*>(wb);
    return canon_block_q6k(a->d, f16_to_f32(w->d), thread_q6k_isum(wb, a));
}

// The canonical row: one warp computes dot(weight row `wrow` (nb blocks of 256), a[0..nb)).
// Every lane returns the row value.
// Two steps (8 blocks) at a time: both steps' weight slices are loaded before either is used,
// so their loads are in flight together; the contributions are added in the same ascending
// order as one step at a time.
template <uint32_t T>
__device__ __forceinline__ float warp_row_dot_q8k(const uint8_t* wrow, const block_q8k* a, int64_t nb) {
    const int lane = threadIdx.x & (kWarp - 1);
    const int g = lane >> 3, k = lane & 7;
    float p = 0.0f;
    int64_t b0 = 0;
    for (; b0 + 8 <= nb; b0 += 8) {
        const int64_t ba = b0 + g, bb = b0 + 4 + g;
        const typename Q8KBlock<T>::W wa = Q8KBlock<T>::load(wrow + ba * Q8KBlock<T>::kBytes, k);
        const typename Q8KBlock<T>::W wb = Q8KBlock<T>::load(wrow + bb * Q8KBlock<T>::kBytes, k);
        const float ca = group_block_contrib_w<T>(wa, wrow + ba * Q8KBlock<T>::kBytes, a + ba, k);
        const float cb = group_block_contrib_w<T>(wb, wrow + bb * Q8KBlock<T>::kBytes, a + bb, k);
#pragma unroll
        for (int gg = 0; gg < 4; ++gg) {
            const float cg = __shfl_sync(kFullMask, ca, 8 * gg);
            if (lane == (int)((b0 + gg) % kWarp)) p = p + cg;
        }
#pragma unroll
        for (int gg = 0; gg < 4; ++gg) {
            const float cg = __shfl_sync(kFullMask, cb, 8 * gg);
            if (lane == (int)((b0 + 4 + gg) % kWarp)) p = p + cg;
        }
    }
    for (; b0 < nb; b0 += 4) {
        // Groups past the end compute a clamped block (all lanes stay converged for the
        // shuffles) and their value is dropped.
        const int64_t b = b0 + g < nb ? b0 + g : nb - 1;
        const float c = group_block_contrib<T>(wrow + b * Q8KBlock<T>::kBytes, a + b, k);
#pragma unroll
        for (int gg = 0; gg < 4; ++gg) {
            const float cg = __shfl_sync(kFullMask, c, 8 * gg);
            if (b0 + gg < nb && lane == (int)((b0 + gg) % kWarp)) p = p + cg;
        }
    }
    return warp_tree_sum(p);
}

// warp_row_dot_q8k for NT activation rows at once (a + act_rows[j] * nb, j < n <= NT): for
// each activation block the weight block is the same for every j, so each lane loads and
// decodes its weight slice once per block step (Q8KBlock<T>::load) and reuses it for every j
// (lane_w), while each j runs exactly the expression sequence of warp_row_dot_q8k — v[j] is bit for bit
// warp_row_dot_q8k(wrow, a + act_rows[j] * nb, nb). Rows j >= n repeat row 0 (converged
// shuffles) and are dropped.
template <uint32_t T, int NT>
__device__ __forceinline__ void warp_rows_dot_q8k(const uint8_t* wrow, const block_q8k* a, const int64_t* act_rows,
                                                  int n, int64_t nb, float* v) {
    const int lane = threadIdx.x & (kWarp - 1);
    const int g = lane >> 3, k = lane & 7;
    const block_q8k* av[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j) av[j] = a + (j < n ? act_rows[j] : act_rows[0]) * nb;
    float p[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j) p[j] = 0.0f;
    for (int64_t b0 = 0; b0 < nb; b0 += 4) {
        const int64_t b = b0 + g < nb ? b0 + g : nb - 1;
        const uint8_t* wb = wrow + b * Q8KBlock<T>::kBytes;
        const typename Q8KBlock<T>::W w = Q8KBlock<T>::load(wb, k);  // once for the NT rows
#pragma unroll
        for (int j = 0; j < NT; ++j) {
            const float c = group_block_contrib_w<T>(w, wb, av[j] + b, k);
#pragma unroll
            for (int gg = 0; gg < 4; ++gg) {
                const float cg = __shfl_sync(kFullMask, c, 8 * gg);
                if (b0 + gg < nb && lane == (int)((b0 + gg) % kWarp)) p[j] = p[j] + cg;
            }
        }
    }
#pragma unroll
    for (int j = 0; j < NT; ++j) {
        const float r = warp_tree_sum(p[j]);
        if (j < n) v[j] = r;
    }
}

void matvec_q8k_launch(const MatvecArgs& args, const block_q8k* a, cudaStream_t stream);

}  // namespace qwen3moe::cuda
