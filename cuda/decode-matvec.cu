// decode-matvec.cu — the decode step's dense matvecs with their neighbours fused in:
//  * dec_norm_matvec: RMSNorm + Q8K quantisation of the input row (computed by every block in
//    shared memory from the norm weight staged there, or made already by the previous layer's
//    dec_down) and the rows of up to three matrices (q, k, v) in one grid;
//  * dec_matvec_add: Q8K quantisation of the input into shared memory (every block, unless the
//    attention already made the Q8K blocks: then every block copies them there), the matvec
//    and, when asked, the residual add (attn_output projection + ffn_inp; without a residual it
//    is the LM head's plain matvec).
// Work split (decode-common.cuh): one thread per (row, 256-value block), a segment of
// W = dec_seg_width(nb) lanes per row, kDecThreads / W rows per block. Before waiting for the
// previous kernel each block starts copying its weight rows into shared memory (cp.async), so
// the weight traffic overlaps the previous kernel; the dots then read shared memory.
#include <stdexcept>
#include <string>

#include "cuda/decode-common.cuh"
#include "cuda/decode-ops.h"
#include "runtime/errors.h"

namespace qwen3moe::cuda {

namespace {

// Rows [g0, g1) of up to three matrices numbered back to back (global row numbering), staged.
struct StagedRows {
    int64_t base[3];  // offset in the block's shared memory of the first staged row of matrix m
    int64_t lo[3];    // global row of base[m]
};

// Start copying rows [g0, g1) of the n_mat matrices into dst; fills s. Returns the bytes used.
__device__ __forceinline__ int64_t stage_rows(const DecMatrix* mat, int n_mat, int64_t n, int64_t g0, int64_t g1,
                                              uint8_t* dst, StagedRows& s) {
    int64_t off = 0, used = 0;
    for (int m = 0; m < n_mat; ++m) {
        const int64_t lo = g0 > off ? g0 : off, hi = g1 < off + mat[m].n_rows ? g1 : off + mat[m].n_rows;
        s.base[m] = 0;
        s.lo[m] = lo;
        if (lo < hi) {
            const int64_t rb = q8k_row_bytes(mat[m].type, n);
            s.base[m] = stage_async(dst + used, static_cast<const uint8_t*>(mat[m].w) + (lo - off) * rb, (hi - lo) * rb) - dst;
            used += stage_bytes((hi - lo) * rb);
        }
        off += mat[m].n_rows;
    }
    stage_commit();
    return used;
}

// The thread's part of row g0 + threadIdx.x / W (segments of W lanes, block j = lane in
// segment), from the staged rows at sm (stage_rows' dst: offsets keep the loads in the shared
// state space); every thread must call it. Returns the row value on the segment's lane 0 and
// sets *row (row within its matrix) and *m (matrix; n_mat when past the end).
__device__ __forceinline__ float seg_rows_dot(const DecMatrix* mat, int n_mat, const StagedRows& s, const uint8_t* sm,
                                              int64_t n, int64_t g0, const block_q8k* a, int64_t* row, int* m_out) {
    const int64_t nb = n / QK_K;
    const int W = dec_seg_width(nb);
    const int j = threadIdx.x & (W - 1);
    int64_t r = g0 + threadIdx.x / W, off = 0;
    int m = 0;
    while (m < n_mat && r >= off + mat[m].n_rows) off += mat[m++].n_rows;
    float c = 0.0f;
    if (m < n_mat && j < nb) {
        const uint32_t t = mat[m].type;
        const int64_t rb = q8k_row_bytes(t, n);
        c = thread_block_contrib_any(t, sm + s.base[m] + (r - s.lo[m]) * rb + j * (rb / nb), a + j);
    }
    const float v = seg_row_value(c, j, nb, W);
    *row = r - off;
    *m_out = m;
    return v;
}

__global__ void __launch_bounds__(kDecThreads) dec_norm_matvec_kernel(DecNormMatvecArgs p, int64_t w_smem) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int64_t nb = p.n / QK_K;
    const int R = kDecThreads / dec_seg_width(nb);
    const int64_t g0 = (int64_t)blockIdx.x * R;
    dec_mark(p.trace, 0);
    // Without Q8K input the norm is computed here: its weight is staged too, in a group of its own
    // ahead of the rows' (block_rms_norm_q8k waits for it alone).
    const float* wn = nullptr;
    if (!p.in_q8) {
        wn = reinterpret_cast<const float*>(stage_async(smem + w_smem, p.norm_w, p.n * (int64_t)sizeof(float)));
        stage_commit();
    }
    StagedRows s;
    stage_rows(p.mat, p.n_mat, p.n, g0, g0 + R, smem, s);
    pdl_wait();
    pdl_launch_next();
    dec_mark(p.trace, 1);
    const block_q8k* a = p.in_q8;
    const int64_t wn_smem = stage_bytes(p.n * (int64_t)sizeof(float));
    float* y_sh = reinterpret_cast<float*>(smem + w_smem + wn_smem);
    block_q8k* q_sh = reinterpret_cast<block_q8k*>(smem + w_smem + wn_smem + p.n * sizeof(float));
    if (a) {  // made by the previous layer's dec_down: copied to shared memory (see block_copy_q8k_nosync)
        block_copy_q8k_nosync(a, nb, reinterpret_cast<block_q8k*>(smem + w_smem));
        a = reinterpret_cast<const block_q8k*>(smem + w_smem);  // stage_wait's barrier publishes it
    } else {
        block_rms_norm_q8k<false, 1>(p.x, wn, p.n, p.eps, y_sh, q_sh);
        a = q_sh;
        if (blockIdx.x == 0) {
            if (p.norm_out)
                for (int64_t i = threadIdx.x; i < p.n; i += blockDim.x) p.norm_out[i] = y_sh[i];
            if (p.norm_q8) {
                const int* src = reinterpret_cast<const int*>(q_sh);
                int* dst = reinterpret_cast<int*>(p.norm_q8);
                for (int64_t i = threadIdx.x; i < nb * (int64_t)sizeof(block_q8k) / 4; i += blockDim.x) dst[i] = src[i];
            }
        }
    }
    dec_mark(p.trace, 2);
    stage_wait();
    dec_mark(p.trace, 3);
    int64_t r;
    int m;
    const float v = seg_rows_dot(p.mat, p.n_mat, s, smem, p.n, g0, a, &r, &m);
    if (m < p.n_mat && (threadIdx.x & (dec_seg_width(nb) - 1)) == 0) p.mat[m].out[r] = v;
    dec_mark(p.trace, 4);
}

__global__ void __launch_bounds__(kDecThreads) dec_matvec_add_kernel(DecMatvecAddArgs p, int64_t w_smem) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int64_t nb = p.n / QK_K;
    const int R = kDecThreads / dec_seg_width(nb);
    const int64_t r0 = (int64_t)blockIdx.x * R;
    dec_mark(p.trace, 0);
    StagedRows s;
    stage_rows(&p.mat, 1, p.n, r0, r0 + R, smem, s);
    pdl_wait();
    pdl_launch_next();
    dec_mark(p.trace, 1);
    // The input's Q8K blocks in shared memory: made here, or copied from the attention's.
    block_q8k* q_sh = reinterpret_cast<block_q8k*>(smem + w_smem);
    if (p.in_q8)
        block_copy_q8k_nosync(p.in_q8, nb, q_sh);  // stage_wait's barrier publishes the copy
    else
        block_quantize_q8k(p.in, 1, p.n, q_sh);
    const block_q8k* a = q_sh;
    // The residual of this thread's row, loaded now so that its round trip overlaps the dots.
    const int W = dec_seg_width(nb);
    const int64_t rr = r0 + threadIdx.x / W;
    const bool adds = p.sum && (threadIdx.x & (W - 1)) == 0 && rr < p.mat.n_rows;
    const float res = adds ? p.residual[rr] : 0.0f;
    dec_mark(p.trace, 2);
    stage_wait();
    dec_mark(p.trace, 3);
    int64_t r;
    int m;
    const float v = seg_rows_dot(&p.mat, 1, s, smem, p.n, r0, a, &r, &m);
    if (m < 1 && (threadIdx.x & (W - 1)) == 0) {
        p.mat.out[r] = v;
        if (adds) p.sum[r] = res + v;  // the residual add (one rounding), as add()
    }
    dec_mark(p.trace, 4);
}

void check_matrix(const DecMatrix& m, int64_t n, const char* what) {
    if (!dec_q8k_type(m.type))
        throw UnsupportedType(std::string(what) + ": no fused decode dot for weight type " + ggml_type_name(m.type));
    if (!m.w || !m.out || m.n_rows <= 0) throw std::invalid_argument(std::string(what) + ": bad matrix");
    if ((m.type == GGML_TYPE_Q4_K || m.type == GGML_TYPE_Q5_K) && reinterpret_cast<uintptr_t>(m.w) % 16 != 0)
        throw std::invalid_argument(std::string(what) + ": Q4_K/Q5_K weights must be 16-byte aligned");
    (void)n;
}

void check_row_length(int64_t n, const char* what) {
    if (n <= 0 || n % QK_K != 0 || n / QK_K > kDecMaxBlocks)
        throw std::invalid_argument(std::string(what) + ": n must be a multiple of 256, at most 32 blocks");
}
}  // namespace

bool dec_q8k_type(uint32_t type) { return matvec_q8k_supported(type); }

void dec_norm_matvec(const DecNormMatvecArgs& p, void* stream, bool pdl) {
    check_row_length(p.n, "dec_norm_matvec");
    if (p.n_mat < 1 || p.n_mat > 3) throw std::invalid_argument("dec_norm_matvec: 1..3 matrices");
    const int64_t R = kDecThreads / dec_seg_width(p.n / QK_K);
    int64_t rows = 0, max_rb = 0;
    for (int m = 0; m < p.n_mat; ++m) {
        check_matrix(p.mat[m], p.n, "dec_norm_matvec");
        rows += p.mat[m].n_rows;
        max_rb = std::max<int64_t>(max_rb, q8k_row_bytes(p.mat[m].type, p.n));
    }
    // The block's R rows lie in at most n_mat ranges, each staged with < 32 bytes of slack.
    const int64_t w_smem = (R * max_rb + 32 * p.n_mat + 15) & ~int64_t(15);
    // Without Q8K input: the staged norm weight, y and its Q8K blocks.
    const size_t norm_smem = (size_t)stage_bytes(p.n * (int64_t)sizeof(float)) + (size_t)p.n * sizeof(float) +
                             (size_t)(p.n / QK_K) * sizeof(block_q8k);
    const size_t smem = (size_t)w_smem + (p.in_q8 ? (size_t)(p.n / QK_K) * sizeof(block_q8k) : norm_smem);
    dec_set_smem(dec_norm_matvec_kernel, smem, "dec_norm_matvec");
    launch_dec(dec_norm_matvec_kernel, dim3(ceil_div_u(rows, R)), smem, stream, pdl, p, w_smem);
}

void dec_matvec_add(const DecMatvecAddArgs& p, void* stream, bool pdl) {
    check_row_length(p.n, "dec_matvec_add");
    check_matrix(p.mat, p.n, "dec_matvec_add");
    if (!p.in_q8 && !p.in) throw std::invalid_argument("dec_matvec_add: null input");
    if (p.sum && !p.residual) throw std::invalid_argument("dec_matvec_add: sum without a residual");
    const int64_t R = kDecThreads / dec_seg_width(p.n / QK_K);
    const int64_t w_smem = stage_bytes(R * q8k_row_bytes(p.mat.type, p.n));
    const size_t smem = (size_t)w_smem + (size_t)(p.n / QK_K) * sizeof(block_q8k);
    dec_set_smem(dec_matvec_add_kernel, smem, "dec_matvec_add");
    launch_dec(dec_matvec_add_kernel, dim3(ceil_div_u(p.mat.n_rows, R)), smem, stream, pdl, p, w_smem);
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
