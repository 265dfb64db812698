// matvec-tiled.cuh — the multi-token launch shape shared by matvec-q8k.cu and matvec-f32act.cu.
//
// Prefill reads each weight row once per tile of slots instead of once per slot: a block of
// kTileWarps warps owns kTileRows consecutive rows (warp w: rows w, w + kTileWarps, ...) and
// one "unit" of up to kTileSlots slots; each warp walks its rows and, for each row, the unit's
// slots, so the row's bytes come from L1 after the first slot. The per-(slot, row) value is the
// unchanged one-warp canonical row dot (RowDot), so the bits are those of the one-slot kernel.
//
// Units: without grouping, unit u = slots [u*kTileSlots, ...) in order, each slot using matrix
// ids[s] (0 without ids). With a device grouping (moe-group.cu: slots sorted by expert, then cut
// into work entries {matrix, start, count} of one matrix each), unit u = work entry u, so all
// slots of a unit share one expert matrix and that matrix is read once per unit.
#pragma once
#include <cstdint>

#include "cuda/common.cuh"

namespace qwen3moe::cuda {

constexpr int kTileWarps = 8;                        // warps per block
constexpr int kTileRowsPerWarp = 2;                  // rows per warp
constexpr int kTileRows = kTileWarps * kTileRowsPerWarp;  // rows per block
constexpr int kTileSlots = 16;                       // slots per unit
constexpr int kWideSlots = 32;                       // slots per unit of the wide work list
constexpr int kSubSlots = 4;                         // slots one warp computes jointly

// Device grouping of slots by matrix id (layout written by moe_group, int32 words):
// [0] n_work, [1] n_work_wide, [2..3] unused, [4, 4 + n_slots) perm (slots sorted by bucket),
// then max_work entries {matrix (-1: invalid id), start in perm, count} (units of kTileSlots),
// then max_work_wide entries of the same form (units of kWideSlots, for matvec-mma-wide.cu).
Q3_HD int64_t moe_group_max_work(int64_t n_slots, int64_t n_mat) {
    return (n_slots + kTileSlots - 1) / kTileSlots + n_mat + 1;
}
Q3_HD int64_t moe_group_max_work_wide(int64_t n_slots, int64_t n_mat) {
    return (n_slots + kWideSlots - 1) / kWideSlots + n_mat + 1;
}
struct SlotGroups {
    const int32_t* n_work = nullptr;       // device scalar, or nullptr (no grouping)
    const int32_t* perm = nullptr;         // device [n_slots]
    const int32_t* work = nullptr;         // device [max_work][3]
    const int32_t* n_work_wide = nullptr;  // device scalar
    const int32_t* work_wide = nullptr;    // device [max_work_wide][3]
};
inline SlotGroups slot_groups(const int32_t* groups, int64_t n_slots, int64_t n_mat = 0) {
    SlotGroups g;
    if (!groups) return g;
    g.n_work = groups;
    g.perm = groups + 4;
    g.work = groups + 4 + n_slots;
    g.n_work_wide = groups + 1;
    g.work_wide = n_mat > 0 ? g.work + 3 * moe_group_max_work(n_slots, n_mat) : nullptr;
    return g;
}

// RowDot: `__device__ float operator()(int64_t mat, int64_t row, int64_t act_row) const`, the
// canonical dot computed by one whole warp (every lane returns it), and
// `__device__ void many(int64_t mat, int64_t row, const int64_t* act_rows, int n, float* v) const`
// (n <= kSubSlots): v[j] = operator()(mat, row, act_rows[j]) for j < n, bit for bit — computed
// jointly so that one matrix row's bytes and decoding serve several activation rows.
template <class RowDot>
__global__ void __launch_bounds__(kTileWarps * kWarp)
    matvec_tiled_kernel(RowDot dot, int64_t n_rows, int64_t n_mat, const int32_t* __restrict__ ids,
                        int64_t n_slots, int n_used, bool act_per_slot, SlotGroups g, int64_t n_units,
                        float* __restrict__ out) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int64_t row0 = (int64_t)blockIdx.x * kTileRows + warp;
    for (int64_t u = blockIdx.y; u < n_units; u += gridDim.y) {
        int64_t start, cnt, unit_mat = 0;
        if (g.n_work) {
            if (u >= *g.n_work) break;  // block-uniform; later units are empty too
            unit_mat = g.work[3 * u];
            start = g.work[3 * u + 1];
            cnt = g.work[3 * u + 2];
        } else {
            start = u * kTileSlots;
            cnt = n_slots - start < kTileSlots ? n_slots - start : kTileSlots;
        }
        for (int rr = 0; rr < kTileRowsPerWarp; ++rr) {
            const int64_t row = row0 + (int64_t)rr * kTileWarps;
            if (row >= n_rows) break;  // warp-uniform
            for (int64_t i0 = 0; i0 < cnt; i0 += kSubSlots) {
                const int n = cnt - i0 < kSubSlots ? (int)(cnt - i0) : kSubSlots;
                int64_t slot[kSubSlots], mat[kSubSlots], act[kSubSlots];
                bool same = true;
#pragma unroll
                for (int j = 0; j < kSubSlots; ++j) {
                    const int64_t sj = j < n ? (g.n_work ? g.perm[start + i0 + j] : start + i0 + j) : 0;
                    slot[j] = sj;
                    mat[j] = j < n ? (g.n_work ? unit_mat : (ids ? ids[sj] : 0)) : 0;
                    act[j] = act_per_slot ? sj : sj / n_used;
                    if (j < n && mat[j] != mat[0]) same = false;
                }
                float v[kSubSlots];
                if (same && mat[0] >= 0 && mat[0] < n_mat) {  // warp-uniform
                    dot.many(mat[0], row, act, n, v);
                } else {
#pragma unroll
                    for (int j = 0; j < kSubSlots; ++j) {
                        if (j >= n) break;
                        if (mat[j] < 0 || mat[j] >= n_mat)
                            v[j] = __int_as_float(0x7fc00000);  // invalid expert id: poison the row
                        else
                            v[j] = dot(mat[j], row, act[j]);
                    }
                }
                if (lane == 0) {
#pragma unroll
                    for (int j = 0; j < kSubSlots; ++j)
                        if (j < n) out[slot[j] * n_rows + row] = v[j];
                }
            }
        }
    }
}

// Grid of the tiled kernel: x = row blocks, y = units (grid-stride beyond 65535).
inline dim3 matvec_tiled_grid(int64_t n_rows, int64_t n_units) {
    return dim3(ceil_div_u(n_rows, kTileRows), (unsigned)(n_units < 65535 ? n_units : 65535));
}

inline int64_t matvec_tiled_units(int64_t n_slots, int64_t n_mat, bool grouped) {
    return grouped ? moe_group_max_work(n_slots, n_mat) : (n_slots + kTileSlots - 1) / kTileSlots;
}

}  // namespace qwen3moe::cuda
