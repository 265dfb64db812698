// decode-common.cuh — device helpers of the fused single-token (decode) kernels.
//
// The decode step runs as one CUDA graph of a few fused kernels per layer (cuda-backend.cu,
// decode_step). Consecutive kernels are chained with programmatic dependent launch (PDL,
// sm_90): each kernel first prefetches the weight bytes it will read into L2 (weights never
// change, so this is safe before the previous kernel finished), then waits for the previous
// kernel (griddepcontrol.wait: it has completed and its writes are visible), then lets the
// next kernel launch (griddepcontrol.launch_dependents) and computes. Nothing is written and
// no activation is read before the wait (one exception, argued in decode-experts.cu: dec_down
// reads the router's expert ids, whose kernel has completed by then). Without PDL (older GPUs, or a launch without the
// attribute) the wait returns at once and the prefetch is a plain hint.
//
// The arithmetic is unchanged: every value is computed by the same canonical device functions
// the op-by-op kernels use (warp_rms_scale, warp_quantize_q8k_block, warp_row_dot_q8k,
// warp_row_dot_f32act, ...), so the fused step gives the op-by-op bits.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "cuda/common.cuh"
#include "cuda/decode-ops.h"
#include "cuda/matvec-f32act.cuh"
#include "cuda/matvec-q8k.cuh"
#include "cuda/quantize-q8k.cuh"
#include "cuda/rms-norm.cuh"
#include "quant/ggml-types.h"

namespace qwen3moe::cuda {

// Wait for the previous kernel of the stream (PDL); a no-op without a programmatic dependency.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Allow the next kernel of the stream to launch (it still waits for this one before reading).
__device__ __forceinline__ void pdl_launch_next() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// ---- thread-block clusters (sm_90) --------------------------------------------------------
//
// The halves of the cluster barrier (barrier.cluster; every thread of every block of the
// cluster executes each, warp-converged) and stores into another block's shared memory
// (distributed shared memory). The host launches clusters only on compute capability >= 9.0
// (dec_cluster_size); code built for an older GPU traps instead of running unsynchronised.

// Arrive without ordering memory (e.g. to learn later that every block of the cluster runs).
__device__ __forceinline__ void cluster_arrive_relaxed() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#elif defined(__CUDA_ARCH__)
    __trap();
#endif
}

// Arrive with release semantics: this thread's earlier writes (shared memory of any block of
// the cluster, global memory) are visible to every thread of the cluster after its cluster_wait.
__device__ __forceinline__ void cluster_arrive() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
#elif defined(__CUDA_ARCH__)
    __trap();
#endif
}

// Wait (acquire) until every thread of the cluster has arrived in the current phase.
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");
#elif defined(__CUDA_ARCH__)
    __trap();
#endif
}

// Store v at the address of this block's shared `dst` in the shared memory of cluster block
// `rank` (the block's rank in its cluster, %cluster_ctarank).
__device__ __forceinline__ void cluster_store_shared(float* dst, unsigned rank, float v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uint32_t local = (uint32_t)__cvta_generic_to_shared(dst);
    uint32_t remote;
    asm("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
    asm volatile("st.shared::cluster.f32 [%0], %1;" ::"r"(remote), "f"(v) : "memory");
#elif defined(__CUDA_ARCH__)
    __trap();
#endif
}

// Phase mark m of the trace (decode-ops.h), by thread 0 of the block; a no-op without a trace.
__device__ __forceinline__ void dec_mark(unsigned long long* trace, int m) {
    if (!trace || threadIdx.x != 0) return;
    const unsigned b = blockIdx.y * gridDim.x + blockIdx.x;
    if (b >= (unsigned)kDecTraceBlocks) return;
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    trace[(b * kDecTraceMarks + m) * 2] = t;
    trace[(b * kDecTraceMarks + m) * 2 + 1] = (unsigned long long)clock64();
}

// Prefetch bytes [p, p + n) of global memory into L2 (a hint; called by the whole block).
// sm_90: one bulk prefetch of the 16-byte aligned range inside [p, p + n); older GPUs: one
// prefetch per 128-byte line.
__device__ __forceinline__ void block_prefetch_l2(const void* p, int64_t n) {
    if (n <= 0) return;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (threadIdx.x == 0) {
        const uintptr_t a = (reinterpret_cast<uintptr_t>(p) + 15) & ~uintptr_t(15);
        const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + (uintptr_t)n) & ~uintptr_t(15);
        for (uintptr_t s = a; s < e; s += (uintptr_t)1 << 20) {  // chunks of at most 1 MiB
            const uint32_t len = (uint32_t)(e - s < ((uintptr_t)1 << 20) ? e - s : ((uintptr_t)1 << 20));
            asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(s), "r"(len) : "memory");
        }
    }
#elif defined(__CUDA_ARCH__)
    const char* c = static_cast<const char*>(p);
    for (int64_t o = (int64_t)threadIdx.x * 128; o < n; o += (int64_t)blockDim.x * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(c + o));
#endif
}

// Row dot of a quantised weight row with Q8K activations for a run-time type (warp-uniform);
// the type must be one of matvec_q8k_supported.
__device__ __forceinline__ float warp_row_dot_q8k_any(uint32_t type, const uint8_t* wrow, const block_q8k* a,
                                                      int64_t nb) {
    switch (type) {
        case GGML_TYPE_Q4_K: return warp_row_dot_q8k<GGML_TYPE_Q4_K>(wrow, a, nb);
        case GGML_TYPE_Q5_K: return warp_row_dot_q8k<GGML_TYPE_Q5_K>(wrow, a, nb);
        case GGML_TYPE_Q6_K: return warp_row_dot_q8k<GGML_TYPE_Q6_K>(wrow, a, nb);
        case GGML_TYPE_Q8_0: return warp_row_dot_q8k<GGML_TYPE_Q8_0>(wrow, a, nb);
        case GGML_TYPE_Q4_0: return warp_row_dot_q8k<GGML_TYPE_Q4_0>(wrow, a, nb);
        default: return __int_as_float(0x7fc00000);  // rejected on the host before capture
    }
}

// ---- one thread per (row, weight block): the decode matvecs' work split ------------------
//
// For rows of nb <= 32 blocks the canonical row (dot-canon.h) is tree32 over the lane partials
// p_b = +0.0f + c_b (b < nb) and p_l = +0.0f (l >= nb). The first tree steps with s >= W, W the
// next power of two >= nb, add +0.0f to every live partial, which changes none of them (a
// partial +0.0f + c_b is never -0.0f, and x + (+0.0f) == x for every other x, NaN included), so
// the row is the tree's last steps s = W/2, ..., 1 over lanes 0..W-1 — a __shfl_down_sync tree
// inside a segment of W lanes. Each lane of a segment computes one block's c_b alone
// (host_block_contrib: the 8 lane slices of Q8KBlock in turn, exact integer sums), so no
// shuffles sit inside the integer work and each thread keeps a whole block's weight bytes in
// flight.

// Segment width for rows of nb blocks (1 <= nb <= 32): the next power of two >= nb.
Q3_HD int dec_seg_width(int64_t nb) {
    int w = 1;
    while (w < nb) w <<= 1;
    return w;
}

// c_b of one weight block (run-time type, one thread).
__device__ __forceinline__ float thread_block_contrib_any(uint32_t type, const uint8_t* wb, const block_q8k* a) {
    switch (type) {
        case GGML_TYPE_Q4_K:
            if ((reinterpret_cast<uintptr_t>(wb) & 15) == 0) return thread_q4k_contrib(wb, a);
            return host_block_contrib<GGML_TYPE_Q4_K>(wb, a);
        case GGML_TYPE_Q5_K: return host_block_contrib<GGML_TYPE_Q5_K>(wb, a);
        case GGML_TYPE_Q6_K: return thread_q6k_contrib(wb, a);
        case GGML_TYPE_Q8_0: return host_block_contrib<GGML_TYPE_Q8_0>(wb, a);
        case GGML_TYPE_Q4_0: return host_block_contrib<GGML_TYPE_Q4_0>(wb, a);
        default: return __int_as_float(0x7fc00000);  // rejected on the host before capture
    }
}

// The row value from the segment's block contributions: lane j (0 <= j < W) of a segment of W
// lanes holds c (its block j's c_b; ignored for j >= nb). Every lane of the warp must call it
// (full-mask shuffles); lane 0 of each segment returns the canonical row value.
__device__ __forceinline__ float seg_row_value(float c, int j, int64_t nb, int W) {
    float p = j < nb ? 0.0f + c : 0.0f;
    for (int s = W >> 1; s >= 1; s >>= 1) p = p + __shfl_down_sync(kFullMask, p, s, W);
    return p;
}

// ---- weights staged in shared memory ------------------------------------------------------
//
// A block copies the weight bytes it reads into shared memory with 16-byte cp.async copies of
// the enclosing 16-byte aligned range (weights never change, so this is issued before
// pdl_wait and overlaps the previous kernel), then computes from shared memory. Device weight
// buffers are allocated in whole 16-byte units, so the aligned range stays inside them.

// Shared bytes that stage_async needs for n bytes (the copied range plus alignment slack).
Q3_HD int64_t stage_bytes(int64_t n) { return (n + 15 + 16) & ~int64_t(15); }

// The whole block: start copying [src, src + n) into dst (16-byte aligned shared memory);
// returns the address of src's first byte in dst (src's alignment mod 16 is kept).
// The copies carry the L2 policy evict_first: a decode step streams ~1.9 GB of weights through
// the 50 MB L2 once each, and with the default policy they also evict what the next layers
// reuse — the kernels' code (instruction fetches then go to device memory), activations, the
// KV rows and the norm weights. Compile with -DQ3_NO_L2_HINT for the plain copies (A/B).
__device__ __forceinline__ const uint8_t* stage_async(uint8_t* dst, const void* src, int64_t n) {
    const uintptr_t s = reinterpret_cast<uintptr_t>(src);
    const uintptr_t a = s & ~uintptr_t(15), e = (s + (uintptr_t)n + 15) & ~uintptr_t(15);
    const int64_t n16 = (int64_t)((e - a) >> 4);
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
#if defined(Q3_NO_L2_HINT)
    for (int64_t i = threadIdx.x; i < n16; i += blockDim.x)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d + (uint32_t)(16 * i)),
                     "l"(a + (uintptr_t)(16 * i))
                     : "memory");
#else
    uint64_t pol;
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    for (int64_t i = threadIdx.x; i < n16; i += blockDim.x)
        asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;" ::"r"(d + (uint32_t)(16 * i)),
                     "l"(a + (uintptr_t)(16 * i)), "l"(pol)
                     : "memory");
#endif
    return dst + (s - a);
}

// Commit the copies issued so far (one group).
__device__ __forceinline__ void stage_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }

// Wait for every copy of this thread, then for the whole block (ends with __syncthreads).
__device__ __forceinline__ void stage_wait() {
    asm volatile("cp.async.wait_all;" ::: "memory");
    __syncthreads();
}

// Bytes of one row of n values of a Q8K-dot weight type (host and device).
Q3_HD int64_t q8k_row_bytes(uint32_t type, int64_t n) {
    switch (type) {
        case GGML_TYPE_Q4_K: return n / 256 * (int64_t)sizeof(block_q4_K);
        case GGML_TYPE_Q5_K: return n / 256 * (int64_t)sizeof(block_q5_K);
        case GGML_TYPE_Q6_K: return n / 256 * (int64_t)sizeof(block_q6_K);
        case GGML_TYPE_Q8_0: return n / 32 * (int64_t)sizeof(block_q8_0);
        case GGML_TYPE_Q4_0: return n / 32 * (int64_t)sizeof(block_q4_0);
        default: return 0;
    }
}

// The whole block: y = RMSNorm(x) * w (the rms_norm expression, scale from warp_rms_scale in
// warp 0, shared with the block) into shared y_sh [n] (16-byte aligned) and its Q8K blocks into
// shared q_sh [n / 256], exactly as rms_norm_q8k. x (global, 16-byte aligned) is first copied to
// y_sh with 16-byte loads, so the canonical strided sum reads shared memory, not a chain of
// global loads. Ends with __syncthreads.
// kBypassL1: read x with ld.global.cg (x was written by other blocks of the running kernel).
// kWPending: -1 when w is global memory; k >= 0 when w is shared memory staged by this block
// (stage_async, before pdl_wait: the weights never change) in a group followed by k newer
// committed groups. Each thread then waits for its own copies of w after issuing its loads of
// x, and the barrier before the scale hands every copy to the block, so the normalise loop
// reads shared memory instead of one dependent global load per iteration.
template <bool kBypassL1 = false, int kWPending = -1>
__device__ __forceinline__ void block_rms_norm_q8k(const float* x, const float* w, int64_t n, float eps, float* y_sh,
                                                   block_q8k* q_sh) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1), n_warps = blockDim.x >> 5;
    for (int64_t i = threadIdx.x; i < n / 4; i += blockDim.x)
        reinterpret_cast<float4*>(y_sh)[i] =
            kBypassL1 ? __ldcg(reinterpret_cast<const float4*>(x) + i) : reinterpret_cast<const float4*>(x)[i];
    if constexpr (kWPending >= 0) asm volatile("cp.async.wait_group %0;" ::"n"(kWPending) : "memory");
    __shared__ float sc_sh;
    __syncthreads();
    if (warp == 0) {
        const float s = warp_rms_scale(y_sh, n, eps);  // one warp: the same bits as any other
        if (lane == 0) sc_sh = s;
    }
    __syncthreads();  // sc_sh written; every read of y_sh = x done
    const float sc = sc_sh;
    const int64_t nb = n / QK_K;
    for (int64_t b = warp; b < nb; b += n_warps) {
        const int64_t o = b * QK_K;
        for (int i = lane; i < QK_K; i += kWarp) y_sh[o + i] = (y_sh[o + i] * sc) * w[o + i];
        __syncwarp();
        warp_quantize_q8k_block(y_sh + o, q_sh + b);
    }
    __syncthreads();
}

// Q8K activation blocks of the decode dots in shared memory. In the one-thread-per-(row, block)
// split, lane j of a segment reads activation block j, so one 4-byte load of a warp touches up
// to 32 different blocks 292 bytes apart: from global memory that is one L1 wavefront per
// distinct line, ~8-24 per load and 64 loads per block dot. Measured on an H200 (bench/NOTES.md,
// session 8): the o-proj's dots 6.0 -> 3.2 us, the down projection's 5.8 -> 3.9. In shared
// memory the same reads are conflict-free: block j starts at bank 73 j mod 32, a bijection.
//
// The whole block: start copying n_blocks Q8K blocks from global src (written by an earlier
// kernel; read with ld.global.cg) into shared dst (16-byte aligned): the loads are issued and
// stored here; the caller's next __syncthreads (e.g. stage_wait's) hands them to the block.
__device__ __forceinline__ void block_copy_q8k_nosync(const block_q8k* src, int64_t n_blocks, block_q8k* dst) {
    const int64_t bytes = n_blocks * (int64_t)sizeof(block_q8k);
    // kBatch loads per thread are issued before any store (one round trip per batch).
    constexpr int kBatch = 2;
    const int64_t step = (int64_t)blockDim.x;
    if (reinterpret_cast<uintptr_t>(src) % 16 == 0 && bytes % 16 == 0) {
        const uint4* s = reinterpret_cast<const uint4*>(src);
        uint4* d = reinterpret_cast<uint4*>(dst);
        for (int64_t i0 = threadIdx.x; i0 < bytes / 16; i0 += kBatch * step) {
            uint4 v[kBatch];
#pragma unroll
            for (int b = 0; b < kBatch; ++b)
                if (i0 + b * step < bytes / 16) v[b] = __ldcg(s + i0 + b * step);
#pragma unroll
            for (int b = 0; b < kBatch; ++b)
                if (i0 + b * step < bytes / 16) d[i0 + b * step] = v[b];
        }
    } else {
        const int* s = reinterpret_cast<const int*>(src);  // blocks are 4-byte aligned (292 = 4 x 73)
        int* d = reinterpret_cast<int*>(dst);
        for (int64_t i0 = threadIdx.x; i0 < bytes / 4; i0 += 4 * kBatch * step) {
            int v[4 * kBatch];
#pragma unroll
            for (int b = 0; b < 4 * kBatch; ++b)
                if (i0 + b * step < bytes / 4) v[b] = __ldcg(s + i0 + b * step);
#pragma unroll
            for (int b = 0; b < 4 * kBatch; ++b)
                if (i0 + b * step < bytes / 4) d[i0 + b * step] = v[b];
        }
    }
}

// The whole block: Q8K blocks of rows x [n_rows][n] (global, 16-byte aligned rows) into shared
// q_sh [n_rows][n / 256], as quantize_q8k. Ends with __syncthreads.
__device__ __forceinline__ void block_quantize_q8k(const float* x, int64_t n_rows, int64_t n, block_q8k* q_sh) {
    const int warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    const int64_t nb = n / QK_K;
    for (int64_t b = warp; b < n_rows * nb; b += n_warps) warp_quantize_q8k_block(x + b * QK_K, q_sh + b);
    __syncthreads();
}

// Largest dynamic shared memory of the norm staging (no opt-in needed below 48 KiB).
constexpr size_t kDecMaxSmem = 48 * 1024;
constexpr int kDecWarps = 8;                 // warps per block of the decode kernels
constexpr int kDecThreads = kDecWarps * kWarp;

// The most dynamic shared memory per block that the device allows `kernel` next to its static
// shared memory (the cap dec_set_smem raises the kernel to; the 48 KiB default cap counts static
// + dynamic bytes).
template <typename K>
inline size_t dec_max_smem(K kernel) {
    int dev = 0, optin = 0;
    Q3_CUDA_CHECK(cudaGetDevice(&dev));
    Q3_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    cudaFuncAttributes fa;
    Q3_CUDA_CHECK(cudaFuncGetAttributes(&fa, reinterpret_cast<const void*>(kernel)));
    return (size_t)optin > fa.sharedSizeBytes ? (size_t)optin - fa.sharedSizeBytes : 0;
}

// Allow `kernel` `bytes` of dynamic shared memory: raises the kernel's cap to dec_max_smem;
// throws std::invalid_argument naming `what` when `bytes` is more than that.
template <typename K>
inline void dec_set_smem(K kernel, size_t bytes, const char* what) {
    const size_t max_dyn = dec_max_smem(kernel);
    cudaFuncAttributes fa;
    Q3_CUDA_CHECK(cudaFuncGetAttributes(&fa, reinterpret_cast<const void*>(kernel)));
    if (bytes > max_dyn)
        throw std::invalid_argument(std::string(what) + ": needs " + std::to_string(bytes) +
                                    " bytes of dynamic shared memory per block, the device allows " +
                                    std::to_string(max_dyn));
    if (fa.maxDynamicSharedSizeBytes < (int)max_dyn)
        Q3_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                           cudaFuncAttributeMaxDynamicSharedMemorySize, (int)max_dyn));
}

// Shared-memory carveout of the decode kernels: every decode kernel asks for the largest
// shared-memory carveout, so consecutive kernels of the step never need an SM's L1/shared split
// reconfigured between them (scheduling only: the same bits). Measured on an H200: tg128
// 254.0 -> 264.5 tok/s, after 4096 tokens 174.4 -> 195.3 (bench/NOTES.md, session 3).
// QWEN3MOE_CUDA_DEC_CARVEOUT=0 leaves the choice to the driver.
inline bool dec_uniform_carveout() {
    static const bool on = [] {
        const char* e = std::getenv("QWEN3MOE_CUDA_DEC_CARVEOUT");
        return !(e && std::string(e) == "0");
    }();
    return on;
}

// Thread-block clusters in the decode kernels (sm_90): e.g. the router's blocks hand their
// logits to block 0 through distributed shared memory and the cluster barrier instead of global
// stores, a fence and an atomic counter (decode-router.cu). The same values either way.
// QWEN3MOE_CUDA_DEC_CLUSTER=0 takes the paths of GPUs without clusters.
inline bool dec_clusters_enabled() {
    static const bool on = [] {
        const char* e = std::getenv("QWEN3MOE_CUDA_DEC_CLUSTER");
        return !(e && std::string(e) == "0");
    }();
    return on;
}

// Launch `kernel` on `stream`, with the programmatic-dependent-launch attribute when pdl, and
// as thread-block clusters of `cluster` blocks along x when cluster > 0 (sm_90; grid.x must be
// a multiple of it).
template <typename... KArgs, typename... Args>
inline void launch_dec_cluster(void (*kernel)(KArgs...), dim3 grid, int cluster, size_t smem, void* stream, bool pdl,
                               Args... args) {
    if (dec_uniform_carveout())
        Q3_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                           cudaFuncAttributePreferredSharedMemoryCarveout,
                                           (int)cudaSharedmemCarveoutMaxShared));
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(kDecThreads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = to_stream(stream);
    cudaLaunchAttribute attr[2];
    int n = 0;
    if (pdl) {
        attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[n].val.programmaticStreamSerializationAllowed = 1;
        ++n;
    }
    if (cluster > 0) {
        attr[n].id = cudaLaunchAttributeClusterDimension;
        attr[n].val.clusterDim.x = (unsigned)cluster;
        attr[n].val.clusterDim.y = 1;
        attr[n].val.clusterDim.z = 1;
        ++n;
    }
    cfg.attrs = attr;
    cfg.numAttrs = n;
    Q3_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, args...));
}

// Launch `kernel` on `stream`, with the programmatic-dependent-launch attribute when pdl.
template <typename... KArgs, typename... Args>
inline void launch_dec(void (*kernel)(KArgs...), dim3 grid, size_t smem, void* stream, bool pdl, Args... args) {
    launch_dec_cluster(kernel, grid, 0, smem, stream, pdl, args...);
}

// The largest cluster size c among max_c, max_c / 2, max_c / 4, ..., 1 (powers of two when
// max_c is one) with which `kernel` (kDecThreads threads, `smem` dynamic bytes: call
// dec_set_smem first when that is above 48 KiB) can be resident at least `min_clusters` times
// at once on the current device; 0 when none can, or when the device has no thread-block
// clusters (compute capability < 9.0). Sizes above 8 need the non-portable-size attribute,
// which this sets on the kernel.
template <typename K>
inline int dec_cluster_size(K kernel, size_t smem, int max_c, int min_clusters) {
    int dev = 0, major = 0;
    Q3_CUDA_CHECK(cudaGetDevice(&dev));
    Q3_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    if (major < 9) return 0;
    if (max_c > 8)
        Q3_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                           cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
    for (int c = max_c; c >= 1; c >>= 1) {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3((unsigned)c);
        cfg.blockDim = dim3(kDecThreads);
        cfg.dynamicSmemBytes = smem;
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = (unsigned)c;
        attr[0].val.clusterDim.y = 1;
        attr[0].val.clusterDim.z = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
        int n = 0;
        if (cudaOccupancyMaxActiveClusters(&n, reinterpret_cast<const void*>(kernel), &cfg) != cudaSuccess) {
            cudaGetLastError();
            continue;
        }
        if (n >= min_clusters) return c;
    }
    return 0;
}

}  // namespace qwen3moe::cuda
