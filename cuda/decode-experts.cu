// decode-experts.cu — the decode step's routed experts in two launches:
//  * dec_gate_up: block (row group, slot r): after the router finished (wait), the block copies
//    its rows of expert ids[r]'s gate and up matrices into shared memory, then each segment of
//    W lanes (one thread per 256-value block, decode-common.cuh) computes one gate and one up
//    row (the matvec rule on the ffn_norm Q8K blocks) and SwiGLU canon_silu(g) * u — the values
//    of matvec + matvec + swiglu; the last block to finish a 256-row chunk of a slot (atomic
//    counter; on sm_90 the first block of the chunk's thread-block cluster) quantises that
//    chunk to Q8K (quantize_q8k's bits) for the down projection.
//  * dec_down: the router is complete when this kernel starts (dec_gate_up lets it launch only
//    after its own wait), so the expert ids are read and the block's rows of the k down
//    matrices copied into shared memory before waiting for dec_gate_up; then the segments
//    compute the (slot, row) dots of the block's D rows, and one thread per row the combine
//    moe[d] = canon_fma(w_r, y_r[d], moe[d]) in rank order from +0.0f and the residual
//    x[d] = ffn_inp[d] + moe[d] — the values of matvec + moe_combine + add; then (when asked)
//    the last block to finish (atomic counter) computes the next RMSNorm of x and its Q8K
//    blocks (the next layer's attn_norm or output_norm, as rms_norm_q8k).
// A slot whose id is outside [0, n_mat) gets NaN rows, as the op-by-op kernels.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "cuda/decode-common.cuh"
#include "cuda/decode-ops.h"
#include "runtime/errors.h"

namespace qwen3moe::cuda {

namespace {
constexpr int kMaxSlots = 64;

// kCluster: the 256 / R blocks of each 256-row chunk form one thread-block cluster (sm_90).
// Once the cluster barrier's first phase shows every block running, each block stores its
// SwiGLU values into the first block's shared chunk (distributed shared memory); the second
// phase (release / acquire at cluster scope) publishes them and that block quantises the
// chunk — no fence, counter or reload through global memory.
template <bool kCluster>
__global__ void __launch_bounds__(kDecThreads) dec_gate_up_kernel(DecGateUpArgs p, int64_t g_smem, int64_t a_smem) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int64_t nb = p.n / QK_K;
    const int W = dec_seg_width(nb), R = kDecThreads / W;
    const int warp = threadIdx.x >> 5, j = threadIdx.x & (W - 1);
    const int r = blockIdx.y;
    const int64_t i0 = (int64_t)blockIdx.x * R;  // R divides 256 and 256 divides n_ff
    // The cluster barrier's first phase: once it has completed every block of the cluster runs,
    // so the first block's shared memory may be written.
    dec_mark(p.trace, 0);
    if constexpr (kCluster) cluster_arrive_relaxed();
    pdl_wait();
    pdl_launch_next();  // after the wait: the next kernel may read the router's ids at once
    dec_mark(p.trace, 1);
    const int64_t e = p.ids[r];
    const bool valid = e >= 0 && e < p.n_mat;
    const int64_t gb = q8k_row_bytes(p.gate_type, p.n), ub = q8k_row_bytes(p.up_type, p.n);
    const uint8_t* gs = nullptr;
    const uint8_t* us = nullptr;
    if (valid) {
        gs = stage_async(smem, static_cast<const uint8_t*>(p.gate) + (e * p.n_ff + i0) * gb, R * gb);
        us = stage_async(smem + g_smem, static_cast<const uint8_t*>(p.up) + (e * p.n_ff + i0) * ub, R * ub);
    }
    stage_commit();
    // The ffn_norm Q8K blocks in shared memory (block_copy_q8k_nosync); stage_wait publishes them.
    block_q8k* a_sh = reinterpret_cast<block_q8k*>(smem + a_smem);
    block_copy_q8k_nosync(p.a, nb, a_sh);
    stage_wait();
    dec_mark(p.trace, 2);
    const int seg = threadIdx.x / W;
    float gc = 0.0f, uc = 0.0f;
    if (valid && j < nb) {
        gc = thread_block_contrib_any(p.gate_type, gs + seg * gb + j * (gb / nb), a_sh + j);
        uc = thread_block_contrib_any(p.up_type, us + seg * ub + j * (ub / nb), a_sh + j);
    }
    float gv = seg_row_value(gc, j, nb, W), uv = seg_row_value(uc, j, nb, W);
    if (!valid) gv = uv = __int_as_float(0x7fc00000);
    dec_mark(p.trace, 3);
    __shared__ __align__(16) float chunk_sh[QK_K];
    const int64_t c = i0 / QK_K, nbf = p.n_ff / QK_K;
    if constexpr (kCluster) {
        cluster_wait();  // the first phase: every block of the cluster has started
        if (j == 0) {
            const int64_t o = (int64_t)r * p.n_ff + i0 + seg;
            const float sw = canon_silu(gv) * uv;
            p.gate_out[o] = gv;
            p.up_out[o] = uv;
            p.swiglu_out[o] = sw;
            cluster_store_shared(chunk_sh + i0 % QK_K + seg, 0, sw);  // the first block's chunk
        }
        // Second phase: arrive releases the stores into the first block's chunk, its wait
        // acquires them all (blocks of a chunk are consecutive in x: the first has rank 0).
        cluster_arrive();
        cluster_wait();
        dec_mark(p.trace, 4);
        if (i0 % QK_K != 0) return;
        if (warp == 0) warp_quantize_q8k_block(chunk_sh, p.swiglu_q8 + (int64_t)r * nbf + c);
        dec_mark(p.trace, 5);
        return;
    }
    if (j == 0) {
        const int64_t o = (int64_t)r * p.n_ff + i0 + seg;
        p.gate_out[o] = gv;
        p.up_out[o] = uv;
        p.swiglu_out[o] = canon_silu(gv) * uv;
    }
    // The last block of this 256-row chunk quantises it (the down projection's input).
    __shared__ bool last_sh;
    const unsigned per_chunk = QK_K / R;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_sh = atomicAdd(&p.counters[r * nbf + c], 1u) == per_chunk - 1;
    __syncthreads();
    dec_mark(p.trace, 4);
    if (!last_sh) return;
    __threadfence();
    for (int t = threadIdx.x; t < QK_K; t += blockDim.x) chunk_sh[t] = __ldcg(p.swiglu_out + (int64_t)r * p.n_ff + c * QK_K + t);
    __syncthreads();
    if (warp == 0) warp_quantize_q8k_block(chunk_sh, p.swiglu_q8 + (int64_t)r * nbf + c);
    dec_mark(p.trace, 5);
    if (threadIdx.x == 0) p.counters[r * nbf + c] = 0u;  // ready for the next launch
}

__global__ void __launch_bounds__(kDecThreads) dec_down_kernel(DecDownArgs p, int D, int64_t slot_smem, int64_t q_smem) {
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ int64_t e_sh[kMaxSlots];
    const int64_t nb = p.n_ff / QK_K;
    const int W = dec_seg_width(nb), S = kDecThreads / W;
    const int j = threadIdx.x & (W - 1), seg = threadIdx.x / W;
    const int64_t d0 = (int64_t)blockIdx.x * D;
    const int64_t d1 = d0 + D < p.n_out ? d0 + D : p.n_out;
    const int64_t rb = q8k_row_bytes(p.type, p.n_ff);
    float* y_sh = reinterpret_cast<float*>(smem + p.k * slot_smem);  // [k][D], then the Q8K rows at q_smem
    dec_mark(p.trace, 0);
    // The router finished before this kernel could launch (see the file comment): read its ids
    // (bypassing L1) and start copying this block's rows of the k experts.
    for (int r = threadIdx.x; r < p.k; r += blockDim.x) e_sh[r] = __ldcg(p.ids + r);
    __syncthreads();
    for (int r = 0; r < p.k; ++r) {
        const int64_t e = e_sh[r];
        if (e >= 0 && e < p.n_mat)
            stage_async(smem + r * slot_smem, static_cast<const uint8_t*>(p.down) + (e * p.n_out + d0) * rb,
                        (d1 - d0) * rb);
    }
    stage_commit();
    pdl_wait();
    pdl_launch_next();
    dec_mark(p.trace, 1);
    // The k slots' Q8K SwiGLU rows in shared memory (block_copy_q8k_nosync), and the combine's
    // weights and residual loaded now, so that their round trips overlap the copy and the dots;
    // stage_wait publishes them.
    block_q8k* q = reinterpret_cast<block_q8k*>(smem + q_smem);
    block_copy_q8k_nosync(p.hidden_q8, p.k * nb, q);
    __shared__ float w_sh[kMaxSlots];
    for (int r = threadIdx.x; r < p.k; r += blockDim.x) w_sh[r] = p.weights[r];
    const bool comb = (int)threadIdx.x < d1 - d0;
    const float res = comb ? p.residual[d0 + threadIdx.x] : 0.0f;
    stage_wait();
    dec_mark(p.trace, 2);
    const int items = p.k * D;
    for (int it0 = 0; it0 < items; it0 += S) {  // block-uniform trip count
        const int item = it0 + seg;
        const int r = item / D, dd = item - r * D;
        const bool live = item < items && d0 + dd < d1;
        const int64_t e = live ? e_sh[r] : -1;
        const bool valid = e >= 0 && e < p.n_mat;
        float c = 0.0f;
        if (valid && j < nb) {
            const uintptr_t src = reinterpret_cast<uintptr_t>(p.down) + (uintptr_t)((e * p.n_out + d0) * rb);
            const uint8_t* base = smem + r * slot_smem + (src & 15);
            c = thread_block_contrib_any(p.type, base + dd * rb + j * (rb / nb), q + (int64_t)r * nb + j);
        }
        float v = seg_row_value(c, j, nb, W);
        if (live && j == 0) {
            if (!valid) v = __int_as_float(0x7fc00000);
            p.expert_out[(int64_t)r * p.n_out + d0 + dd] = v;
            y_sh[r * D + dd] = v;
        }
    }
    __syncthreads();
    dec_mark(p.trace, 3);
    if (comb) {
        const int64_t d = d0 + threadIdx.x;
        float acc = 0.0f;  // rank order from +0.0f, as moe_combine
        for (int r = 0; r < p.k; ++r) acc = canon_fma(w_sh[r], y_sh[r * D + threadIdx.x], acc);
        p.moe_out[d] = acc;
        p.x_out[d] = res + acc;
    }
    dec_mark(p.trace, 4);
    if (!p.next_norm_w) return;
    // The last block to finish normalises the whole new x for the next consumer.
    __shared__ bool last_sh;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_sh = atomicAdd(p.counter, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last_sh) return;
    __threadfence();
    float* ny_sh = reinterpret_cast<float*>(smem);  // the staged weights are no longer needed
    block_q8k* nq_sh = reinterpret_cast<block_q8k*>(smem + p.n_out * sizeof(float));
    block_rms_norm_q8k<true>(p.x_out, p.next_norm_w, p.n_out, p.next_eps, ny_sh, nq_sh);
    for (int64_t i = threadIdx.x; i < p.n_out; i += blockDim.x) p.next_norm_out[i] = ny_sh[i];
    const int* src = reinterpret_cast<const int*>(nq_sh);
    int* dst = reinterpret_cast<int*>(p.next_norm_q8);
    for (int64_t i = threadIdx.x; i < p.n_out / QK_K * (int64_t)sizeof(block_q8k) / 4; i += blockDim.x) dst[i] = src[i];
    if (threadIdx.x == 0) *p.counter = 0u;  // ready for the next launch
}
}  // namespace

void dec_gate_up(const DecGateUpArgs& p, void* stream, bool pdl) {
    if (p.n <= 0 || p.n % QK_K != 0 || p.n / QK_K > kDecMaxBlocks || p.k <= 0 || p.k > kMaxSlots || p.n_ff <= 0 ||
        p.n_mat <= 0)
        throw std::invalid_argument("dec_gate_up: bad shape");
    if (p.n_ff % QK_K != 0 || !p.swiglu_q8 || !p.counters)
        throw std::invalid_argument("dec_gate_up: n_ff must be a multiple of 256; q8 output and counters needed");
    if (!dec_q8k_type(p.gate_type) || !dec_q8k_type(p.up_type))
        throw UnsupportedType(std::string("dec_gate_up: no fused decode dot for ") + ggml_type_name(p.gate_type) + "/" +
                              ggml_type_name(p.up_type));
    const int64_t R = kDecThreads / dec_seg_width(p.n / QK_K);
    const int64_t g_smem = stage_bytes(R * q8k_row_bytes(p.gate_type, p.n));
    const int64_t a_smem = g_smem + stage_bytes(R * q8k_row_bytes(p.up_type, p.n));  // 16-byte aligned
    const size_t smem = (size_t)a_smem + (size_t)(p.n / QK_K) * sizeof(block_q8k);
    const dim3 grid((unsigned)(p.n_ff / R), (unsigned)p.k);
    const int per_chunk = (int)(QK_K / R);  // blocks of one 256-row chunk
    dec_set_smem(dec_gate_up_kernel<true>, smem, "dec_gate_up");
    if (dec_clusters_enabled() && per_chunk <= 16 &&
        dec_cluster_size(dec_gate_up_kernel<true>, smem, per_chunk, 1) == per_chunk) {
        launch_dec_cluster(dec_gate_up_kernel<true>, grid, per_chunk, smem, stream, pdl, p, g_smem, a_smem);
        return;
    }
    dec_set_smem(dec_gate_up_kernel<false>, smem, "dec_gate_up");
    launch_dec(dec_gate_up_kernel<false>, grid, smem, stream, pdl, p, g_smem, a_smem);
}

void dec_down(const DecDownArgs& p, void* stream, bool pdl) {
    if (p.n_ff <= 0 || p.n_ff % QK_K != 0 || p.n_ff / QK_K > kDecMaxBlocks || p.k <= 0 || p.k > kMaxSlots ||
        p.n_out <= 0 || p.n_mat <= 0)
        throw std::invalid_argument("dec_down: bad shape");
    if (!dec_q8k_type(p.type))
        throw UnsupportedType(std::string("dec_down: no fused decode dot for ") + ggml_type_name(p.type));
    if (!p.hidden_q8) throw std::invalid_argument("dec_down: null input");
    const int S = kDecThreads / dec_seg_width(p.n_ff / QK_K);
    const int D = std::max(1, S / p.k);  // output rows per block: k * D segments' worth of dots
    const int64_t slot_smem = stage_bytes((int64_t)D * q8k_row_bytes(p.type, p.n_ff));
    const int64_t q_smem = (p.k * slot_smem + (int64_t)p.k * D * (int64_t)sizeof(float) + 15) & ~int64_t(15);
    size_t smem = (size_t)q_smem + (size_t)(p.k * (p.n_ff / QK_K)) * sizeof(block_q8k);
    if (p.next_norm_w) {
        if (p.n_out % QK_K != 0 || !p.next_norm_out || !p.next_norm_q8 || !p.counter)
            throw std::invalid_argument("dec_down: the next norm needs n_out % 256 == 0, outputs and a counter");
        const size_t norm_smem = (size_t)p.n_out * sizeof(float) + (size_t)(p.n_out / QK_K) * sizeof(block_q8k);
        if (norm_smem > kDecMaxSmem) throw std::invalid_argument("dec_down: row too long for the fused next norm");
        smem = std::max(smem, norm_smem);
    }
    dec_set_smem(dec_down_kernel, smem, "dec_down");
    launch_dec(dec_down_kernel, dim3(ceil_div_u(p.n_out, D)), smem, stream, pdl, p, D, slot_smem, q_smem);
}

}  // namespace qwen3moe::cuda
