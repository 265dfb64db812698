// matvec-f32act.cu — weight rows (any supported type) x f32 activations, one warp per row.
// One token: grid x = groups of kRowsPerBlock rows, y = slots; several tokens: the tiled shape
// of matvec-tiled.cuh, as matvec-q8k.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "cuda/matvec-f32act.cuh"
#include "cuda/matvec-tiled.cuh"
#include "runtime/errors.h"

namespace qwen3moe::cuda {

namespace {
constexpr int kRowsPerBlock = 4;
constexpr unsigned kMaxGridY = 65535;

template <uint32_t T>
__global__ void matvec_f32act_kernel(const uint8_t* __restrict__ w, int64_t n_rows, int64_t n,
                                     int64_t n_mat, const int32_t* __restrict__ ids, int64_t n_slots,
                                     int n_used, bool act_per_slot, const float* __restrict__ x,
                                     float* __restrict__ out) {
    const int64_t row = (int64_t)blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
    if (row >= n_rows) return;  // warp-uniform
    const int64_t row_bytes = dequant_row_bytes<T>(n);
    for (int64_t s = blockIdx.y; s < n_slots; s += gridDim.y) {
        const int64_t mat = ids ? ids[s] : 0;
        float v;
        if (mat < 0 || mat >= n_mat) {
            v = __int_as_float(0x7fc00000);  // invalid expert id: poison the row
        } else {
            const uint8_t* wrow = w + (mat * n_rows + row) * row_bytes;
            const float* xv = x + (act_per_slot ? s : s / n_used) * n;
            v = warp_row_dot_f32act<T>(wrow, xv, n);
        }
        if ((threadIdx.x & 31) == 0) out[s * n_rows + row] = v;
    }
}

// The tiled kernel's row dot: matrix mat, row `row`, activation row act_row.
template <uint32_t T> struct F32ActRowDot {
    const uint8_t* w;     // device weights [n_mat][n_rows] rows of row_bytes
    int64_t n_rows;       // rows per matrix
    int64_t n;            // values per row
    int64_t row_bytes;    // bytes per weight row
    const float* x;       // device activations [n_act_rows][n]
    __device__ __forceinline__ float operator()(int64_t mat, int64_t row, int64_t act_row) const {
        return warp_row_dot_f32act<T>(w + (mat * n_rows + row) * row_bytes, x + act_row * n, n);
    }
    __device__ __forceinline__ void many(int64_t mat, int64_t row, const int64_t* act_rows, int cnt, float* v) const {
        for (int j = 0; j < cnt; ++j) v[j] = (*this)(mat, row, act_rows[j]);
    }
};

struct Launch {
    const MatvecArgs& p;
    const float* x;
    cudaStream_t stream;
    template <uint32_t T> void operator()() const {
        const int64_t n_slots = (int64_t)p.n_tok * p.n_used;
        if (p.n_tok > 1) {  // prefill; decode (one token, k expert slots) keeps one warp per (slot, row)
            const bool grouped = p.groups && p.ids;
            const int64_t n_units = matvec_tiled_units(n_slots, p.n_mat, grouped);
            const F32ActRowDot<T> dot{static_cast<const uint8_t*>(p.w), p.n_rows, p.n, dequant_row_bytes<T>(p.n), x};
            matvec_tiled_kernel<<<matvec_tiled_grid(p.n_rows, n_units), kTileWarps * kWarp, 0, stream>>>(
                dot, p.n_rows, p.n_mat, p.ids, n_slots, p.n_used, p.act_per_slot,
                slot_groups(grouped ? p.groups : nullptr, n_slots), n_units, p.out);
            Q3_CUDA_CHECK_LAUNCH();
            return;
        }
        const dim3 grid(ceil_div_u(p.n_rows, kRowsPerBlock), (unsigned)std::min<int64_t>(n_slots, kMaxGridY));
        matvec_f32act_kernel<T><<<grid, kRowsPerBlock * kWarp, 0, stream>>>(
            static_cast<const uint8_t*>(p.w), p.n_rows, p.n, p.n_mat, p.ids, n_slots, p.n_used,
            p.act_per_slot, x, p.out);
        Q3_CUDA_CHECK_LAUNCH();
    }
};
}  // namespace

void matvec_f32act_launch(const MatvecArgs& p, const float* x, cudaStream_t stream) {
    const GGMLTypeTraits* tr = ggml_type_traits(p.type);
    if (!tr || !dequant_supported(p.type))
        throw UnsupportedType(std::string("cuda matvec_f32act: unsupported weight type ") +
                              ggml_type_name(p.type));
    if (p.n <= 0 || p.n % tr->block_size != 0)
        throw std::invalid_argument("cuda matvec_f32act: row length " + std::to_string(p.n) +
                                    " is not a positive multiple of the " + tr->name + " block size");
    if (p.n_rows < 0 || p.n_tok < 0 || p.n_used < 1 || p.n_mat < 1)
        throw std::invalid_argument("cuda matvec_f32act: bad shape");
    if (p.n_rows == 0 || p.n_tok == 0) return;
    dispatch_dequant_type(p.type, Launch{p, x, stream});
}

namespace {
struct HostDequant {
    const uint8_t* row;
    int64_t n;
    float* out;
    template <uint32_t T> void operator()() const {
        for (int64_t i = 0; i < n; ++i) out[i] = Dequant<T>::value(row, i);
    }
};
}  // namespace

void dequant_row_host_model(uint32_t type, const void* row, int64_t n, float* out) {
    const GGMLTypeTraits* tr = ggml_type_traits(type);
    if (!tr || !dequant_supported(type))
        throw UnsupportedType(std::string("dequant_row_host_model: unsupported type ") + ggml_type_name(type));
    if (n < 0 || n % tr->block_size != 0) throw std::invalid_argument("dequant_row_host_model: bad length");
    dispatch_dequant_type(type, HostDequant{static_cast<const uint8_t*>(row), n, out});
}

void matvec_f32act(const MatvecArgs& args, const float* x, void* stream) {
    matvec_f32act_launch(args, x, to_stream(stream));
}

}  // namespace qwen3moe::cuda
