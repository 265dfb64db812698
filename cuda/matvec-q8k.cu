// matvec-q8k.cu — quantised weights x Q8K activations (see matvec-q8k.cuh for the split).
// One token (decode): grid x = groups of kRowsPerBlock rows (one warp each), y = slots.
// Several tokens (prefill): the int8 tensor-core kernel of matvec-mma.cu where it applies, else
// the tiled shape of matvec-tiled.cuh (each weight row read once per
// tile of slots; expert slots grouped by matrix when the caller passes a grouping).
#include <algorithm>
#include <stdexcept>
#include <string>

#include "cuda/matvec-mma.cuh"
#include "cuda/matvec-q8k.cuh"
#include "cuda/matvec-tiled.cuh"
#include "runtime/errors.h"

namespace qwen3moe::cuda {

namespace {
constexpr int kRowsPerBlock = 4;
constexpr unsigned kMaxGridY = 65535;

template <uint32_t T>
__global__ void matvec_q8k_kernel(const uint8_t* __restrict__ w, int64_t n_rows, int64_t nb,
                                  int64_t n_mat, const int32_t* __restrict__ ids, int64_t n_slots,
                                  int n_used, bool act_per_slot, const block_q8k* __restrict__ a,
                                  float* __restrict__ out) {
    const int64_t row = (int64_t)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
    if (row >= n_rows) return;  // warp-uniform
    const int64_t row_bytes = nb * Q8KBlock<T>::kBytes;
    for (int64_t s = blockIdx.y; s < n_slots; s += gridDim.y) {
        const int64_t mat = ids ? ids[s] : 0;
        float v;
        if (mat < 0 || mat >= n_mat) {
            v = __int_as_float(0x7fc00000);  // invalid expert id: poison the row
        } else {
            const uint8_t* wrow = w + (mat * n_rows + row) * row_bytes;
            const block_q8k* av = a + (act_per_slot ? s : s / n_used) * nb;
            v = warp_row_dot_q8k<T>(wrow, av, nb);
        }
        if ((threadIdx.x & 31) == 0) out[s * n_rows + row] = v;
    }
}

// The tiled kernel's row dot: matrix mat, row `row`, activation row act_row.
template <uint32_t T> struct Q8KRowDot {
    const uint8_t* w;     // device weights [n_mat][n_rows] rows of row_bytes
    int64_t n_rows;       // rows per matrix
    int64_t nb;           // 256-value blocks per row
    int64_t row_bytes;    // bytes per weight row
    const block_q8k* a;   // device activations [n_act_rows][nb]
    __device__ __forceinline__ float operator()(int64_t mat, int64_t row, int64_t act_row) const {
        return warp_row_dot_q8k<T>(w + (mat * n_rows + row) * row_bytes, a + act_row * nb, nb);
    }
    __device__ __forceinline__ void many(int64_t mat, int64_t row, const int64_t* act_rows, int n, float* v) const {
        warp_rows_dot_q8k<T, kSubSlots>(w + (mat * n_rows + row) * row_bytes, a, act_rows, n, nb, v);
    }
};

template <uint32_t T>
void launch_typed(const MatvecArgs& p, const block_q8k* a, cudaStream_t stream) {
    const int64_t n_slots = (int64_t)p.n_tok * p.n_used;
    if (p.n_tok > 1) {  // prefill; decode (one token, k expert slots) keeps one warp per (slot, row)
        if (matvec_q8k_mma(p, a, stream)) return;  // int8 tensor cores (matvec-mma.cu), same bits
        const bool grouped = p.groups && p.ids;
        const int64_t n_units = matvec_tiled_units(n_slots, p.n_mat, grouped);
        const int64_t nb = p.n / QK_K;
        const Q8KRowDot<T> dot{static_cast<const uint8_t*>(p.w), p.n_rows, nb, nb * Q8KBlock<T>::kBytes, a};
        matvec_tiled_kernel<<<matvec_tiled_grid(p.n_rows, n_units), kTileWarps * kWarp, 0, stream>>>(
            dot, p.n_rows, p.n_mat, p.ids, n_slots, p.n_used, p.act_per_slot,
            slot_groups(grouped ? p.groups : nullptr, n_slots), n_units, p.out);
        Q3_CUDA_CHECK_LAUNCH();
        return;
    }
    const dim3 grid(ceil_div_u(p.n_rows, kRowsPerBlock), (unsigned)std::min<int64_t>(n_slots, kMaxGridY));
    matvec_q8k_kernel<T><<<grid, kRowsPerBlock * kWarp, 0, stream>>>(
        static_cast<const uint8_t*>(p.w), p.n_rows, p.n / QK_K, p.n_mat, p.ids, n_slots, p.n_used,
        p.act_per_slot, a, p.out);
    Q3_CUDA_CHECK_LAUNCH();
}
}  // namespace

bool matvec_q8k_supported(uint32_t type) {
    return type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q5_K || type == GGML_TYPE_Q6_K ||
           type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0;
}

void matvec_q8k_launch(const MatvecArgs& p, const block_q8k* a, cudaStream_t stream) {
    if (!matvec_q8k_supported(p.type))
        throw UnsupportedType(std::string("cuda matvec_q8k: no Q8K dot for weight type ") +
                              ggml_type_name(p.type));
    if (p.n <= 0 || p.n % QK_K != 0)
        throw std::invalid_argument("cuda matvec_q8k: row length " + std::to_string(p.n) +
                                    " must be a positive multiple of 256");
    if (p.n_rows < 0 || p.n_tok < 0 || p.n_used < 1 || p.n_mat < 1)
        throw std::invalid_argument("cuda matvec_q8k: bad shape");
    if ((p.type == GGML_TYPE_Q4_K || p.type == GGML_TYPE_Q5_K) && reinterpret_cast<uintptr_t>(p.w) % 16 != 0)
        throw std::invalid_argument("cuda matvec_q8k: Q4_K/Q5_K weights must be 16-byte aligned");
    if (p.n_rows == 0 || p.n_tok == 0) return;
    switch (p.type) {
        case GGML_TYPE_Q4_K: return launch_typed<GGML_TYPE_Q4_K>(p, a, stream);
        case GGML_TYPE_Q5_K: return launch_typed<GGML_TYPE_Q5_K>(p, a, stream);
        case GGML_TYPE_Q6_K: return launch_typed<GGML_TYPE_Q6_K>(p, a, stream);
        case GGML_TYPE_Q8_0: return launch_typed<GGML_TYPE_Q8_0>(p, a, stream);
        case GGML_TYPE_Q4_0: return launch_typed<GGML_TYPE_Q4_0>(p, a, stream);
        default: break;
    }
}

namespace {
template <uint32_t T>
void host_model_typed(const uint8_t* w, int64_t n_rows, int64_t nb, const block_q8k* a, int64_t n_tok, float* out) {
    for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t r = 0; r < n_rows; ++r) {
            const uint8_t* wrow = w + r * nb * Q8KBlock<T>::kBytes;
            float p[kCanonLanes] = {};  // lane b % 32 adds c_b in ascending b, then the tree
            for (int64_t b = 0; b < nb; ++b)
                p[b % kCanonLanes] = p[b % kCanonLanes] + host_block_contrib<T>(wrow + b * Q8KBlock<T>::kBytes, a + t * nb + b);
            out[t * n_rows + r] = canon_tree32(p);
        }
}
}  // namespace

void matvec_q8k_host_model(uint32_t type, const void* w, int64_t n_rows, int64_t n, const block_q8k* a,
                           int64_t n_tok, float* out) {
    if (!matvec_q8k_supported(type))
        throw UnsupportedType(std::string("matvec_q8k_host_model: no Q8K dot for ") + ggml_type_name(type));
    if (n <= 0 || n % QK_K != 0) throw std::invalid_argument("matvec_q8k_host_model: n must be a multiple of 256");
    const uint8_t* wb = static_cast<const uint8_t*>(w);
    const int64_t nb = n / QK_K;
    switch (type) {
        case GGML_TYPE_Q4_K: return host_model_typed<GGML_TYPE_Q4_K>(wb, n_rows, nb, a, n_tok, out);
        case GGML_TYPE_Q5_K: return host_model_typed<GGML_TYPE_Q5_K>(wb, n_rows, nb, a, n_tok, out);
        case GGML_TYPE_Q6_K: return host_model_typed<GGML_TYPE_Q6_K>(wb, n_rows, nb, a, n_tok, out);
        case GGML_TYPE_Q8_0: return host_model_typed<GGML_TYPE_Q8_0>(wb, n_rows, nb, a, n_tok, out);
        case GGML_TYPE_Q4_0: return host_model_typed<GGML_TYPE_Q4_0>(wb, n_rows, nb, a, n_tok, out);
        default: break;
    }
}

void matvec_q8k(const MatvecArgs& args, const block_q8k* a, void* stream) {
    matvec_q8k_launch(args, a, to_stream(stream));
}

}  // namespace qwen3moe::cuda
