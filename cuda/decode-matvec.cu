// decode-matvec.cu — the decode step's dense matvecs with their neighbours fused in:
//  * dec_norm_matvec: RMSNorm + Q8K quantisation of the input row (computed by every block in
//    shared memory, or made already by the previous layer's dec_down) and the rows of up to
//    three matrices (q, k, v) in one grid;
//  * dec_matvec_add: Q8K quantisation of the input (every block, unless the attention already
//    made the Q8K blocks), the matvec and the residual
//    add (attn_output projection + ffn_inp).
// Block: kDecWarps warps, kRowsPerWarp rows each (warp w: rows w, w + kDecWarps, ...). Before
// waiting for the previous kernel each block prefetches its weight rows into L2.
#include <stdexcept>
#include <string>

#include "cuda/decode-common.cuh"
#include "cuda/decode-ops.h"
#include "runtime/errors.h"

namespace qwen3moe::cuda {

namespace {
constexpr int kRowsPerWarp = 1;  // more blocks, shorter chains of dependent loads per warp
constexpr int kRowsPerBlock = kDecWarps * kRowsPerWarp;

// Prefetch rows [r0, r1) of a matrix into L2.
__device__ __forceinline__ void prefetch_rows(const DecMatrix& m, int64_t n, int64_t r0, int64_t r1) {
    if (r0 >= r1) return;
    const int64_t rb = q8k_row_bytes(m.type, n);
    block_prefetch_l2(static_cast<const uint8_t*>(m.w) + r0 * rb, (r1 - r0) * rb);
}

__global__ void __launch_bounds__(kDecThreads) dec_norm_matvec_kernel(DecNormMatvecArgs p) {
    extern __shared__ __align__(16) unsigned char smem[];
    float* y_sh = reinterpret_cast<float*>(smem);
    block_q8k* q_sh = reinterpret_cast<block_q8k*>(smem + p.n * sizeof(float));
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int64_t g0 = (int64_t)blockIdx.x * kRowsPerBlock, g1 = g0 + kRowsPerBlock;
    {  // this block's rows of each matrix (global row numbering: matrices back to back)
        int64_t off = 0;
        for (int m = 0; m < p.n_mat; ++m) {
            const int64_t lo = g0 > off ? g0 : off, hi = g1 < off + p.mat[m].n_rows ? g1 : off + p.mat[m].n_rows;
            prefetch_rows(p.mat[m], p.n, lo - off, hi - off);
            off += p.mat[m].n_rows;
        }
    }
    pdl_wait();
    pdl_launch_next();
    const int64_t nb = p.n / QK_K;
    const block_q8k* a = p.in_q8;
    if (!a) {
        block_rms_norm_q8k(p.x, p.norm_w, p.n, p.eps, y_sh, q_sh);
        a = q_sh;
    }
    if (!p.in_q8 && blockIdx.x == 0) {
        if (p.norm_out)
            for (int64_t i = threadIdx.x; i < p.n; i += blockDim.x) p.norm_out[i] = y_sh[i];
        if (p.norm_q8) {
            const int* src = reinterpret_cast<const int*>(q_sh);
            int* dst = reinterpret_cast<int*>(p.norm_q8);
            for (int64_t i = threadIdx.x; i < nb * (int64_t)sizeof(block_q8k) / 4; i += blockDim.x) dst[i] = src[i];
        }
    }
    for (int i = 0; i < kRowsPerWarp; ++i) {
        int64_t r = g0 + warp + (int64_t)i * kDecWarps;
        int m = 0;
        while (m < p.n_mat && r >= p.mat[m].n_rows) r -= p.mat[m++].n_rows;
        if (m >= p.n_mat) break;  // warp-uniform
        const DecMatrix& M = p.mat[m];
        const uint8_t* wrow = static_cast<const uint8_t*>(M.w) + r * q8k_row_bytes(M.type, p.n);
        const float v = warp_row_dot_q8k_any(M.type, wrow, a, nb);
        if (lane == 0) M.out[r] = v;
    }
}

__global__ void __launch_bounds__(kDecThreads) dec_matvec_add_kernel(DecMatvecAddArgs p) {
    extern __shared__ __align__(16) unsigned char smem[];
    block_q8k* q_sh = reinterpret_cast<block_q8k*>(smem);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & (kWarp - 1);
    const int64_t r0 = (int64_t)blockIdx.x * kRowsPerBlock;
    prefetch_rows(p.mat, p.n, r0, r0 + kRowsPerBlock < p.mat.n_rows ? r0 + kRowsPerBlock : p.mat.n_rows);
    pdl_wait();
    pdl_launch_next();
    const block_q8k* a = p.in_q8;
    if (!a) {
        block_quantize_q8k(p.in, 1, p.n, q_sh);
        a = q_sh;
    }
    const int64_t nb = p.n / QK_K, rb = q8k_row_bytes(p.mat.type, p.n);
    for (int i = 0; i < kRowsPerWarp; ++i) {
        const int64_t r = r0 + warp + (int64_t)i * kDecWarps;
        if (r >= p.mat.n_rows) break;  // warp-uniform
        const float v = warp_row_dot_q8k_any(p.mat.type, static_cast<const uint8_t*>(p.mat.w) + r * rb, a, nb);
        if (lane == 0) {
            p.mat.out[r] = v;
            p.sum[r] = p.residual[r] + v;  // the residual add (one rounding), as add()
        }
    }
}

void check_matrix(const DecMatrix& m, int64_t n, const char* what) {
    if (!dec_q8k_type(m.type))
        throw UnsupportedType(std::string(what) + ": no fused decode dot for weight type " + ggml_type_name(m.type));
    if (!m.w || !m.out || m.n_rows <= 0) throw std::invalid_argument(std::string(what) + ": bad matrix");
    if ((m.type == GGML_TYPE_Q4_K || m.type == GGML_TYPE_Q5_K) && reinterpret_cast<uintptr_t>(m.w) % 16 != 0)
        throw std::invalid_argument(std::string(what) + ": Q4_K/Q5_K weights must be 16-byte aligned");
    (void)n;
}
}  // namespace

bool dec_q8k_type(uint32_t type) { return matvec_q8k_supported(type); }

void dec_norm_matvec(const DecNormMatvecArgs& p, void* stream, bool pdl) {
    if (p.n <= 0 || p.n % QK_K != 0) throw std::invalid_argument("dec_norm_matvec: n must be a positive multiple of 256");
    if (p.n_mat < 1 || p.n_mat > 3) throw std::invalid_argument("dec_norm_matvec: 1..3 matrices");
    const size_t smem = p.in_q8 ? 0 : (size_t)p.n * sizeof(float) + (size_t)(p.n / QK_K) * sizeof(block_q8k);
    if (smem > kDecMaxSmem) throw std::invalid_argument("dec_norm_matvec: row too long for the fused kernel");
    int64_t rows = 0;
    for (int m = 0; m < p.n_mat; ++m) {
        check_matrix(p.mat[m], p.n, "dec_norm_matvec");
        rows += p.mat[m].n_rows;
    }
    launch_dec(dec_norm_matvec_kernel, dim3(ceil_div_u(rows, kRowsPerBlock)), smem, stream, pdl, p);
}

void dec_matvec_add(const DecMatvecAddArgs& p, void* stream, bool pdl) {
    if (p.n <= 0 || p.n % QK_K != 0) throw std::invalid_argument("dec_matvec_add: n must be a positive multiple of 256");
    check_matrix(p.mat, p.n, "dec_matvec_add");
    if (!p.in || !p.residual || !p.sum) throw std::invalid_argument("dec_matvec_add: null buffer");
    const size_t smem = p.in_q8 ? 0 : (size_t)(p.n / QK_K) * sizeof(block_q8k);
    if (smem > kDecMaxSmem) throw std::invalid_argument("dec_matvec_add: row too long for the fused kernel");
    launch_dec(dec_matvec_add_kernel, dim3(ceil_div_u(p.mat.n_rows, kRowsPerBlock)), smem, stream, pdl, p);
}

bool dec_device_has_pdl(int device) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return major >= 9;
}

}  // namespace qwen3moe::cuda
