// decode-experts.cu — the decode step's routed experts in two launches:
//  * dec_gate_up: block (row group, slot r): after the router finished (wait), the block
//    prefetches its rows of expert ids[r]'s gate and up matrices, then each warp computes gate
//    and up rows (the matvec rule on the ffn_norm Q8K blocks) and SwiGLU canon_silu(g) * u —
//    the values of matvec + matvec + swiglu; the last block to finish a 256-row chunk of a slot
//    (atomic counter) quantises that chunk to Q8K (quantize_q8k's bits) for the down projection.
//  * dec_down: the router is complete when this kernel starts (dec_gate_up lets it launch only
//    after its own wait), so the expert ids are read and the block's rows of the k down
//    matrices prefetched before waiting for dec_gate_up; then warp w computes slots w, w + 8, ...
//    of the block's rows, and one thread per row the combine moe[d] = canon_fma(w_r, y_r[d],
//    moe[d]) in rank order from +0.0f and the residual x[d] = ffn_inp[d] + moe[d] — the values
//    of matvec + moe_combine + add; then (when asked) the
//    last block to finish (atomic counter) computes the next RMSNorm of x and its Q8K blocks
//    (the next layer's attn_norm or output_norm, as rms_norm_q8k).
// A slot whose id is outside [0, n_mat) gets NaN rows, as the op-by-op kernels.
#include <stdexcept>
#include <string>

#include "cuda/decode-common.cuh"
#include "cuda/decode-ops.h"
#include "runtime/errors.h"

namespace qwen3moe::cuda {

namespace {
constexpr int kRowsPerWarp = 1;                       // gate/up: rows per warp
constexpr int kRowsPerBlock = kDecWarps * kRowsPerWarp;
constexpr int kDownRows = 2;                          // down: rows per block (all slots)
constexpr int kMaxSlots = 64;

__global__ void __launch_bounds__(kDecThreads) dec_gate_up_kernel(DecGateUpArgs p) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int r = blockIdx.y;
    const int64_t i0 = (int64_t)blockIdx.x * kRowsPerBlock;
    const int64_t i1 = i0 + kRowsPerBlock < p.n_ff ? i0 + kRowsPerBlock : p.n_ff;
    pdl_wait();
    pdl_launch_next();  // after the wait: the next kernel may read the router's ids at once
    const int64_t e = p.ids[r];
    const bool valid = e >= 0 && e < p.n_mat;
    const int64_t gb = q8k_row_bytes(p.gate_type, p.n), ub = q8k_row_bytes(p.up_type, p.n);
    const uint8_t* g = static_cast<const uint8_t*>(p.gate) + (valid ? e : 0) * p.n_ff * gb;
    const uint8_t* u = static_cast<const uint8_t*>(p.up) + (valid ? e : 0) * p.n_ff * ub;
    if (valid) {
        block_prefetch_l2(g + i0 * gb, (i1 - i0) * gb);
        block_prefetch_l2(u + i0 * ub, (i1 - i0) * ub);
    }
    const int64_t nb = p.n / QK_K;
    for (int k = 0; k < kRowsPerWarp; ++k) {
        const int64_t i = i0 + warp + (int64_t)k * kDecWarps;
        if (i >= p.n_ff) break;  // warp-uniform
        float gv = __int_as_float(0x7fc00000), uv = __int_as_float(0x7fc00000);
        if (valid) {
            gv = warp_row_dot_q8k_any(p.gate_type, g + i * gb, p.a, nb);
            uv = warp_row_dot_q8k_any(p.up_type, u + i * ub, p.a, nb);
        }
        if (lane == 0) {
            const int64_t o = (int64_t)r * p.n_ff + i;
            p.gate_out[o] = gv;
            p.up_out[o] = uv;
            p.swiglu_out[o] = canon_silu(gv) * uv;
        }
    }
    // The last block of this 256-row chunk quantises it (the down projection's input).
    __shared__ bool last_sh;
    __shared__ __align__(16) float chunk_sh[QK_K];
    const int64_t c = i0 / QK_K, nbf = p.n_ff / QK_K;
    const unsigned per_chunk = QK_K / kRowsPerBlock;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_sh = atomicAdd(&p.counters[r * nbf + c], 1u) == per_chunk - 1;
    __syncthreads();
    if (!last_sh) return;
    __threadfence();
    for (int j = threadIdx.x; j < QK_K; j += blockDim.x) chunk_sh[j] = __ldcg(p.swiglu_out + (int64_t)r * p.n_ff + c * QK_K + j);
    __syncthreads();
    if (warp == 0) warp_quantize_q8k_block(chunk_sh, p.swiglu_q8 + (int64_t)r * nbf + c);
    if (threadIdx.x == 0) p.counters[r * nbf + c] = 0u;  // ready for the next launch
}

__global__ void __launch_bounds__(kDecThreads) dec_down_kernel(DecDownArgs p) {
    __shared__ int64_t e_sh[kMaxSlots];
    __shared__ float y_sh[kMaxSlots][kDownRows];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int64_t d0 = (int64_t)blockIdx.x * kDownRows;
    const int64_t d1 = d0 + kDownRows < p.n_out ? d0 + kDownRows : p.n_out;
    const int64_t rb = q8k_row_bytes(p.type, p.n_ff);
    // The router finished before this kernel could launch (see the file comment): read its ids
    // (bypassing L1) and prefetch this block's rows of the k experts.
    for (int r = threadIdx.x; r < p.k; r += blockDim.x) e_sh[r] = __ldcg(p.ids + r);
    __syncthreads();
    for (int r = 0; r < p.k; ++r) {
        const int64_t e = e_sh[r];
        if (e >= 0 && e < p.n_mat)
            block_prefetch_l2(static_cast<const uint8_t*>(p.down) + (e * p.n_out + d0) * rb, (d1 - d0) * rb);
    }
    pdl_wait();
    pdl_launch_next();
    const block_q8k* q = p.hidden_q8;
    const int64_t nb = p.n_ff / QK_K;
    // Warp w: slots w, w + kDecWarps, ... for the block's rows.
    for (int r = warp; r < p.k; r += kDecWarps) {
        const int64_t e = e_sh[r];
        for (int64_t d = d0; d < d1; ++d) {
            float v = __int_as_float(0x7fc00000);
            if (e >= 0 && e < p.n_mat)
                v = warp_row_dot_q8k_any(p.type, static_cast<const uint8_t*>(p.down) + (e * p.n_out + d) * rb,
                                         q + (int64_t)r * nb, nb);
            if (lane == 0) {
                p.expert_out[(int64_t)r * p.n_out + d] = v;
                y_sh[r][d - d0] = v;
            }
        }
    }
    __syncthreads();
    if ((int)threadIdx.x < d1 - d0) {
        const int64_t d = d0 + threadIdx.x;
        float acc = 0.0f;  // rank order from +0.0f, as moe_combine
        for (int r = 0; r < p.k; ++r) acc = canon_fma(p.weights[r], y_sh[r][threadIdx.x], acc);
        p.moe_out[d] = acc;
        p.x_out[d] = p.residual[d] + acc;
    }
    if (!p.next_norm_w) return;
    // The last block to finish normalises the whole new x for the next consumer.
    __shared__ bool last_sh;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_sh = atomicAdd(p.counter, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last_sh) return;
    __threadfence();
    extern __shared__ __align__(16) unsigned char smem[];
    float* ny_sh = reinterpret_cast<float*>(smem);
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
    if (p.n <= 0 || p.n % QK_K != 0 || p.k <= 0 || p.k > kMaxSlots || p.n_ff <= 0 || p.n_mat <= 0)
        throw std::invalid_argument("dec_gate_up: bad shape");
    if (p.n_ff % QK_K != 0 || QK_K % kRowsPerBlock != 0 || !p.swiglu_q8 || !p.counters)
        throw std::invalid_argument("dec_gate_up: n_ff must be a multiple of 256; q8 output and counters needed");
    if (!dec_q8k_type(p.gate_type) || !dec_q8k_type(p.up_type))
        throw UnsupportedType(std::string("dec_gate_up: no fused decode dot for ") + ggml_type_name(p.gate_type) + "/" +
                              ggml_type_name(p.up_type));
    launch_dec(dec_gate_up_kernel, dim3(ceil_div_u(p.n_ff, kRowsPerBlock), (unsigned)p.k), 0, stream, pdl, p);
}

void dec_down(const DecDownArgs& p, void* stream, bool pdl) {
    if (p.n_ff <= 0 || p.n_ff % QK_K != 0 || p.k <= 0 || p.k > kMaxSlots || p.n_out <= 0 || p.n_mat <= 0)
        throw std::invalid_argument("dec_down: bad shape");
    if (!dec_q8k_type(p.type))
        throw UnsupportedType(std::string("dec_down: no fused decode dot for ") + ggml_type_name(p.type));
    if (!p.hidden_q8) throw std::invalid_argument("dec_down: null input");
    size_t smem = 0;
    if (p.next_norm_w) {
        if (p.n_out % QK_K != 0 || !p.next_norm_out || !p.next_norm_q8 || !p.counter)
            throw std::invalid_argument("dec_down: the next norm needs n_out % 256 == 0, outputs and a counter");
        smem = (size_t)p.n_out * sizeof(float) + (size_t)(p.n_out / QK_K) * sizeof(block_q8k);
        if (smem > kDecMaxSmem - kMaxSlots * (sizeof(int64_t) + kDownRows * sizeof(float)))
            throw std::invalid_argument("dec_down: row too long for the fused next norm");
    }
    launch_dec(dec_down_kernel, dim3(ceil_div_u(p.n_out, kDownRows)), smem, stream, pdl, p);
}

}  // namespace qwen3moe::cuda
