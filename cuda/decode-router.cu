// decode-router.cu — the decode step's MoE router in one launch: every block computes
// y = RMSNorm(ffn_inp) * ffn_norm (and its Q8K blocks) in shared memory, block 0 stores both
// (the experts read the Q8K blocks), each warp computes router logits rows by the matvec rule
// of the router's type, and one block runs softmax + top-k with block_router_topk (router.cuh)
// — the same expressions as rms_norm_q8k + matvec + router_topk.
//
// The kernel reads little (the router is n_expert rows) and is bound by its chain of memory
// latencies, so the chain avoids global round trips:
//  * before the wait for the previous kernel, each block starts copying its router rows and the
//    norm weight into shared memory (weights never change); the norm and the dots read them
//    there;
//  * sm_90: the grid is one thread-block cluster. Each block stores its logits into block 0's
//    shared memory (distributed shared memory) and the cluster barrier hands them to block 0,
//    which routes from there: no fence, atomic counter or reload through global memory. One
//    row per warp while the cluster can hold that many blocks (16 for 128 experts), else each
//    warp takes several rows so that the rows fit in the largest cluster the device co-schedules;
//  * other GPUs (or QWEN3MOE_CUDA_DEC_CLUSTER=0): one row per warp, and the last block to finish
//    (a global atomic counter after a fence) reloads the logits and routes.
#include <stdexcept>
#include <string>

#include "cuda/decode-common.cuh"
#include "cuda/decode-ops.h"
#include "cuda/router.cuh"
#include "runtime/errors.h"

namespace qwen3moe::cuda {

namespace {
constexpr int kMaxExpert = 1024;

__device__ __forceinline__ float router_row(uint32_t type, const uint8_t* wrow, const float* y, const block_q8k* q,
                                            int64_t n) {
    switch (type) {
        case GGML_TYPE_F32: return warp_row_dot_f32act<GGML_TYPE_F32>(wrow, y, n);
        case GGML_TYPE_F16: return warp_row_dot_f32act<GGML_TYPE_F16>(wrow, y, n);
        case GGML_TYPE_BF16: return warp_row_dot_f32act<GGML_TYPE_BF16>(wrow, y, n);
        default: return warp_row_dot_q8k_any(type, wrow, q, n / QK_K);
    }
}

__host__ __device__ inline int64_t router_row_bytes(uint32_t type, int64_t n) {
    switch (type) {
        case GGML_TYPE_F32: return n * 4;
        case GGML_TYPE_F16:
        case GGML_TYPE_BF16: return n * 2;
        default: return q8k_row_bytes(type, n);
    }
}

// Shared bytes of a block's staged router rows, rpw rows per warp (host and device).
__host__ __device__ inline int64_t router_rows_smem(uint32_t type, int64_t n, int rpw) {
    return stage_bytes((int64_t)kDecWarps * rpw * router_row_bytes(type, n));
}

// Block b routes rows [b R, (b + 1) R) (R = kDecWarps * rpw), warp w the rows b R + w + j kDecWarps.
// Dynamic shared memory: the staged rows, the staged norm weight, y [n], y's Q8K blocks.
// kCluster: the grid is one cluster (blockIdx.x is the block's rank in it); else the last block
// to finish (p.counter) routes.
template <bool kCluster>
__global__ void __launch_bounds__(kDecThreads) dec_router_kernel(DecRouterArgs p, int rpw) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int64_t rb = router_row_bytes(p.type, p.n);
    const int64_t w_smem = router_rows_smem(p.type, p.n, rpw);
    const int64_t wn_smem = stage_bytes(p.n * (int64_t)sizeof(float));
    float* y_sh = reinterpret_cast<float*>(smem + w_smem + wn_smem);
    block_q8k* q_sh = reinterpret_cast<block_q8k*>(smem + w_smem + wn_smem + p.n * sizeof(float));
    __shared__ float l_sh[kMaxExpert];
    __shared__ float pr_sh[kMaxExpert];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int64_t r0 = (int64_t)blockIdx.x * kDecWarps * rpw;
    const int64_t r1 = r0 + kDecWarps * rpw < p.n_expert ? r0 + kDecWarps * rpw : p.n_expert;
    // The cluster barrier's first phase: once it has completed, every block of the cluster runs,
    // so block 0's shared memory may be written.
    dec_mark(p.trace, 0);
    if constexpr (kCluster) cluster_arrive_relaxed();
    // The norm weight, then this block's router rows, into shared memory (weights: before the wait).
    const float* wn =
        reinterpret_cast<const float*>(stage_async(smem + w_smem, p.norm_w, p.n * (int64_t)sizeof(float)));
    stage_commit();
    const uint8_t* ws = stage_async(smem, static_cast<const uint8_t*>(p.w) + r0 * rb, (r1 - r0) * rb);
    stage_commit();
    pdl_wait();
    pdl_launch_next();
    dec_mark(p.trace, 1);
    block_rms_norm_q8k<false, 1>(p.x, wn, p.n, p.eps, y_sh, q_sh);  // the rows' group may still be in flight
    if (blockIdx.x == 0) {
        for (int64_t i = threadIdx.x; i < p.n; i += blockDim.x) p.norm_out[i] = y_sh[i];
        const int* src = reinterpret_cast<const int*>(q_sh);
        int* dst = reinterpret_cast<int*>(p.norm_q8);
        for (int64_t i = threadIdx.x; i < p.n / QK_K * (int64_t)sizeof(block_q8k) / 4; i += blockDim.x) dst[i] = src[i];
    }
    dec_mark(p.trace, 2);
    stage_wait();
    if constexpr (kCluster) cluster_wait();
    dec_mark(p.trace, 3);
    for (int64_t row = r0 + warp; row < r1; row += kDecWarps) {  // warp-uniform
        const float v = router_row(p.type, ws + (row - r0) * rb, y_sh, q_sh, p.n);
        if (lane == 0) {
            p.logits[row] = v;
            if constexpr (kCluster) cluster_store_shared(l_sh + row, 0, v);  // block 0's l_sh
        }
    }
    dec_mark(p.trace, 4);
    if constexpr (kCluster) {
        // Second phase: arrive releases this thread's stores into block 0's l_sh, block 0's
        // wait acquires them all. The other blocks leave after it (nothing reads their memory).
        cluster_arrive();
        cluster_wait();
        dec_mark(p.trace, 5);
        if (blockIdx.x != 0) return;
    } else {
        __shared__ bool last_sh;
        __threadfence();
        __syncthreads();
        if (threadIdx.x == 0) last_sh = atomicAdd(p.counter, 1u) == gridDim.x - 1;
        __syncthreads();
        dec_mark(p.trace, 5);
        if (!last_sh) return;
        __threadfence();
        for (int i = threadIdx.x; i < p.n_expert; i += blockDim.x) l_sh[i] = __ldcg(p.logits + i);
        __syncthreads();
    }
    // Probabilities in shared memory (the ranks re-read them), then stored.
    __shared__ unsigned long long key_sh[kMaxExpert];
    __shared__ float sel_sh[kRouterMaxUsed];
    __shared__ float red_sh[kDecWarps + 1];
    block_router_topk(l_sh, p.n_expert, p.k, pr_sh, key_sh, sel_sh, red_sh, p.ids, p.weights);
    dec_mark(p.trace, 6);
    for (int i = threadIdx.x; i < p.n_expert; i += blockDim.x) p.probs[i] = pr_sh[i];
    dec_mark(p.trace, 7);
    if (!kCluster && threadIdx.x == 0) *p.counter = 0u;  // ready for the next launch
}

size_t router_smem(const DecRouterArgs& p, int rpw) {
    return (size_t)router_rows_smem(p.type, p.n, rpw) + (size_t)stage_bytes(p.n * (int64_t)sizeof(float)) +
           (size_t)p.n * sizeof(float) + (size_t)(p.n / QK_K) * sizeof(block_q8k);
}

constexpr int kMaxCluster = 16;  // the largest cluster asked for (a non-portable size)

// The router as one cluster of `blocks` blocks, rpw rows per warp: the fewest rows per warp
// whose blocks (as many as the rows need, at most kMaxCluster) the device co-schedules as one
// cluster. rpw = 0 when clusters are off or none fits.
struct RouterCluster {
    int blocks = 0, rpw = 0;
};

RouterCluster router_cluster(const DecRouterArgs& p) {
    RouterCluster rc;
    if (!dec_clusters_enabled()) return rc;
    const auto kernel = dec_router_kernel<true>;
    const size_t max_smem = dec_max_smem(kernel);
    int rpw = (int)ceil_div_u(p.n_expert, kDecWarps * kMaxCluster);
    for (;;) {
        const int c = (int)ceil_div_u(p.n_expert, kDecWarps * rpw);
        const size_t smem = router_smem(p, rpw);
        if (smem > max_smem) return rc;
        dec_set_smem(kernel, smem, "dec_router");  // before the occupancy query
        const int got = dec_cluster_size(kernel, smem, c, 1);
        if (got == 0) return rc;
        if (got == c) {
            rc.blocks = c;
            rc.rpw = rpw;
            return rc;
        }
        rpw = (int)ceil_div_u(p.n_expert, kDecWarps * got);  // then c <= got
    }
}
}  // namespace

void dec_router(const DecRouterArgs& p, void* stream, bool pdl) {
    if (p.n <= 0 || p.n % QK_K != 0) throw std::invalid_argument("dec_router: n must be a positive multiple of 256");
    if (p.n_expert <= 0 || p.n_expert > kMaxExpert || p.k <= 0 || p.k > p.n_expert || p.k > kRouterMaxUsed)
        throw std::invalid_argument("dec_router: n_expert 1..1024 and k 1..min(n_expert, 64)");
    const bool f32act = p.type == GGML_TYPE_F32 || p.type == GGML_TYPE_F16 || p.type == GGML_TYPE_BF16;
    if (!f32act && !dec_q8k_type(p.type))
        throw UnsupportedType(std::string("dec_router: no fused decode dot for router type ") + ggml_type_name(p.type));
    if (!p.norm_w || !p.norm_out || !p.norm_q8 || !p.logits || !p.probs || !p.ids || !p.weights || !p.counter)
        throw std::invalid_argument("dec_router: null buffer");
    const RouterCluster rc = router_cluster(p);
    if (rc.rpw > 0) {
        launch_dec_cluster(dec_router_kernel<true>, dim3(rc.blocks), rc.blocks, router_smem(p, rc.rpw), stream, pdl, p,
                           rc.rpw);
        return;
    }
    const size_t smem = router_smem(p, 1);
    dec_set_smem(dec_router_kernel<false>, smem, "dec_router");  // throws when the row is too long
    launch_dec(dec_router_kernel<false>, dim3(ceil_div_u(p.n_expert, kDecWarps)), smem, stream, pdl, p, 1);
}

}  // namespace qwen3moe::cuda
