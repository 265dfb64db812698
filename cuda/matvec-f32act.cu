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

// Prefill with F32 weights and no expert ids (the router): a block owns kFRows rows x kFSlots
// slots. Their values pass through shared memory in chunks of kFChunk (8 per lane), and warp w,
// lane l keeps lane partial l of 4 rows x 8 slots (rows 4 (w >> 1) + i, slots 8 (w & 1) + j):
// canon_fma(w[k], x[k], p) over k = l, l + 32, ... ascending from +0.0f, then warp_tree_sum —
// the expression of warp_row_dot_f32act. The next chunk is loaded into registers while this one
// is used. Before (one warp per (row, slot) chain, 16 loads per round trip): 80 us for the 30B
// router at 512 tokens, latency-bound.
constexpr int kFRows = 16, kFSlots = 16, kFChunk = 256;
constexpr int kFWLoads = kFRows * kFChunk / 4 / 256;   // float4 loads per thread per chunk: 4
constexpr int kFXLoads = kFSlots * kFChunk / 4 / 256;  // 4
static_assert(kFRows == 4 * 4 && kFSlots == 2 * 8, "8 warps: 4 row groups of 4 x 2 slot groups of 8");

__global__ void __launch_bounds__(256) f32_rows_kernel(const float* __restrict__ w, int64_t n_rows, int64_t n,
                                                       int64_t n_slots, int n_used, bool act_per_slot,
                                                       const float* __restrict__ x, float* __restrict__ out) {
    __shared__ float4 w_sh[kFRows * kFChunk / 4];
    __shared__ float4 x_sh[kFSlots * kFChunk / 4];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t r0 = (int64_t)blockIdx.x * kFRows;
    const int rb = 4 * (warp >> 1), sb = 8 * (warp & 1);
    for (int64_t s0 = (int64_t)blockIdx.y * kFSlots; s0 < n_slots; s0 += (int64_t)gridDim.y * kFSlots) {
        // Row / activation of each staging load (rows and slots past the end repeat the last).
        const float* wsrc[kFWLoads];
        const float* xsrc[kFXLoads];
#pragma unroll
        for (int j = 0; j < kFWLoads; ++j) {
            const int f = tid + 256 * j;
            const int64_t row = min(r0 + f / (kFChunk / 4), n_rows - 1);
            wsrc[j] = w + row * n + 4 * (f % (kFChunk / 4));
        }
#pragma unroll
        for (int j = 0; j < kFXLoads; ++j) {
            const int f = tid + 256 * j;
            const int64_t slot = min(s0 + f / (kFChunk / 4), n_slots - 1);
            xsrc[j] = x + (act_per_slot ? slot : slot / n_used) * n + 4 * (f % (kFChunk / 4));
        }
        const int col = 4 * (tid % (kFChunk / 4));  // this thread's staging column in every chunk
        float4 pw[kFWLoads], px[kFXLoads];
        auto fetch = [&](int64_t c0) {
            const bool in = col < n - c0;
#pragma unroll
            for (int j = 0; j < kFWLoads; ++j)
                pw[j] = in ? *reinterpret_cast<const float4*>(wsrc[j] + c0) : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int j = 0; j < kFXLoads; ++j)
                px[j] = in ? *reinterpret_cast<const float4*>(xsrc[j] + c0) : make_float4(0.f, 0.f, 0.f, 0.f);
        };
        float acc[4][8];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
        fetch(0);
        for (int64_t c0 = 0; c0 < n; c0 += kFChunk) {
            const int steps = (int)((n - c0 < kFChunk ? n - c0 : kFChunk) / kWarp);  // n % 32 == 0
            __syncthreads();  // the previous chunk is consumed
#pragma unroll
            for (int j = 0; j < kFWLoads; ++j) w_sh[tid + 256 * j] = pw[j];
#pragma unroll
            for (int j = 0; j < kFXLoads; ++j) x_sh[tid + 256 * j] = px[j];
            __syncthreads();
            if (c0 + kFChunk < n) fetch(c0 + kFChunk);
            const float* ws = reinterpret_cast<const float*>(w_sh);
            const float* xs = reinterpret_cast<const float*>(x_sh);
            for (int c = 0; c < steps; ++c) {
                const int k = c * kWarp + lane;
                float wv[4], xv[8];
#pragma unroll
                for (int i = 0; i < 4; ++i) wv[i] = ws[(rb + i) * kFChunk + k];
#pragma unroll
                for (int j = 0; j < 8; ++j) xv[j] = xs[(sb + j) * kFChunk + k];
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 8; ++j) acc[i][j] = canon_fma(wv[i], xv[j], acc[i][j]);
            }
        }
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 8; ++j) {
                const float v = warp_tree_sum(acc[i][j]);
                const int64_t row = r0 + rb + i, slot = s0 + sb + j;
                if (lane == 0 && row < n_rows && slot < n_slots) out[slot * n_rows + row] = v;
            }
        __syncthreads();  // shared tiles are rewritten for the next slot group
    }
}

struct Launch {
    const MatvecArgs& p;
    const float* x;
    cudaStream_t stream;
    template <uint32_t T> void operator()() const {
        const int64_t n_slots = (int64_t)p.n_tok * p.n_used;
        if constexpr (T == GGML_TYPE_F32) {
            const bool aligned = ((reinterpret_cast<uintptr_t>(p.w) | reinterpret_cast<uintptr_t>(x)) & 15u) == 0;
            if (p.n_tok > 1 && !p.ids && p.n % kWarp == 0 && aligned) {
                const int64_t n_groups = (n_slots + kFSlots - 1) / kFSlots;
                const dim3 grid(ceil_div_u(p.n_rows, kFRows), (unsigned)std::min<int64_t>(n_groups, kMaxGridY));
                f32_rows_kernel<<<grid, 256, 0, stream>>>(static_cast<const float*>(p.w), p.n_rows, p.n, n_slots,
                                                          p.n_used, p.act_per_slot, x, p.out);
                Q3_CUDA_CHECK_LAUNCH();
                return;
            }
        }
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
