// moe-group.cu — device-side grouping of expert slots by matrix id, for the prefill expert
// matvecs (matvec-tiled.cuh): counts per bucket, exclusive offsets, the two work lists (each
// bucket cut into units of at most kTileSlots slots, and again into units of at most kWideSlots
// for matvec-mma-wide.cu) and the slot permutation, all in one block, so the routing never
// returns to the host. Bucket n_mat collects invalid ids (outside
// [0, n_mat)); its units carry matrix -1 and the matvec writes NaN rows for them.
// The order of slots inside a bucket is whatever the atomics give: every slot's value depends
// on its own (matrix, row, activation) only, so the results do not depend on it.
#include <stdexcept>
#include <string>

#include "cuda/common.cuh"
#include "cuda/cuda-ops.h"
#include "cuda/matvec-tiled.cuh"

namespace qwen3moe::cuda {

namespace {
constexpr int kThreads = 1024;

__global__ void __launch_bounds__(kThreads)
    moe_group_kernel(const int32_t* __restrict__ ids, int64_t n_slots, int n_mat, int32_t* __restrict__ groups) {
    extern __shared__ int sh[];
    const int n_b = n_mat + 1;
    int* cnt = sh;        // [n_b] slots per bucket
    int* cur = sh + n_b;  // [n_b] next free perm index of each bucket
    int32_t* perm = groups + 4;
    int32_t* work = groups + 4 + n_slots;
    int32_t* work_wide = work + 3 * moe_group_max_work(n_slots, n_mat);
    for (int b = threadIdx.x; b < n_b; b += kThreads) cnt[b] = 0;
    __syncthreads();
    for (int64_t s = threadIdx.x; s < n_slots; s += kThreads) {
        const int32_t id = ids[s];
        atomicAdd(&cnt[id >= 0 && id < n_mat ? id : n_mat], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int off = 0, nw = 0, nww = 0;
        for (int b = 0; b < n_b; ++b) {
            cur[b] = off;
            const int c = cnt[b];
            for (int st = 0; st < c; st += kTileSlots) {
                work[3 * nw] = b == n_mat ? -1 : b;
                work[3 * nw + 1] = off + st;
                work[3 * nw + 2] = c - st < kTileSlots ? c - st : kTileSlots;
                ++nw;
            }
            for (int st = 0; st < c; st += kWideSlots) {
                work_wide[3 * nww] = b == n_mat ? -1 : b;
                work_wide[3 * nww + 1] = off + st;
                work_wide[3 * nww + 2] = c - st < kWideSlots ? c - st : kWideSlots;
                ++nww;
            }
            off += c;
        }
        groups[0] = nw;
        groups[1] = nww;
    }
    __syncthreads();
    for (int64_t s = threadIdx.x; s < n_slots; s += kThreads) {
        const int32_t id = ids[s];
        perm[atomicAdd(&cur[id >= 0 && id < n_mat ? id : n_mat], 1)] = (int32_t)s;
    }
}
}  // namespace

size_t moe_group_ints(int64_t n_slots, int64_t n_mat) {
    return 4 + (size_t)n_slots + 3 * (size_t)moe_group_max_work(n_slots, n_mat) +
           3 * (size_t)moe_group_max_work_wide(n_slots, n_mat);
}

void moe_group(const int32_t* ids, int64_t n_slots, int64_t n_mat, int32_t* groups, void* stream) {
    if (n_mat < 1 || n_mat > kMoeGroupMaxMat)
        throw std::invalid_argument("cuda moe_group: matrix count " + std::to_string(n_mat) + " must be in 1.." +
                                    std::to_string(kMoeGroupMaxMat));
    if (n_slots < 0 || n_slots > (int64_t)1 << 30) throw std::invalid_argument("cuda moe_group: bad slot count");
    const size_t smem = 2 * (size_t)(n_mat + 1) * sizeof(int);
    moe_group_kernel<<<1, kThreads, smem, to_stream(stream)>>>(ids, n_slots, (int)n_mat, groups);
    Q3_CUDA_CHECK_LAUNCH();
}

}  // namespace qwen3moe::cuda
