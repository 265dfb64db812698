// dec_floor.cu — where a fused decode matvec's ~9 us goes: one kernel shape timed alone, as a
// CUDA graph of L back-to-back launches (each launch on its own copy of the weights, so L2 holds
// none of them), with and without programmatic dependent launch, in variants built from the
// decode kernels' own device functions with one suspect removed at a time:
//   empty      pdl_wait + launch_next only (the launch/PDL floor, same grid and shared memory)
//   stage      cp.async staging of the block's weight rows + wait (the memory part)
//   dot_gq     stage + the one-thread-per-block dots, activations' Q8K blocks read from global
//   dot_sq     stage + dots, Q8K blocks copied to shared memory after the wait
//   real       stage + quantise the f32 input in every block + dots (= dec_matvec_add)
//   lib        the library's dec_matvec_add launcher itself (in -> quantised per block)
//   lib_q8     the library's launcher with the Q8K blocks given
//   nostage    dots reading weights from global directly (no staging), Q8K from global
//   stream     a plain 16-byte streaming read of the same bytes (the bandwidth reference)
// Build on the device after the package build (static libraries in build/device):
//   nvcc -std=c++17 -O3 -arch=sm_90 -fmad=false --expt-relaxed-constexpr -I. -Icpp bench/dec_floor.cu \
//        build/device/libqwen3moe_cuda.a build/device/libqwen3moe_cpu.a -lpthread -o /tmp/dec_floor
// Prints one JSON object per (shape, variant, pdl): us per launch (median of replays).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "cuda/decode-common.cuh"
#include "cuda/decode-ops.h"

using namespace qwen3moe;
using namespace qwen3moe::cuda;

namespace {

enum Mode { kEmpty, kStage, kDotGQ, kDotSQ, kReal, kNoStage };

template <int MODE>
__global__ void __launch_bounds__(kDecThreads) var_kernel(const uint8_t* w, int64_t n_rows, int64_t n,
                                                          const block_q8k* aq, const float* in, float* out,
                                                          int64_t w_smem) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int64_t nb = n / QK_K;
    const int W = dec_seg_width(nb);
    const int R = kDecThreads / W;
    const int64_t r0 = (int64_t)blockIdx.x * R;
    const int64_t rb = q8k_row_bytes(GGML_TYPE_Q4_K, n);
    const int64_t rows = std::min<int64_t>(R, n_rows - r0);
    const uint8_t* ws = nullptr;
    if constexpr (MODE != kEmpty && MODE != kNoStage) {
        ws = stage_async(smem, w + r0 * rb, rows * rb);
        stage_commit();
    }
    pdl_wait();
    pdl_launch_next();
    if constexpr (MODE == kEmpty) {
        if (threadIdx.x == 0) out[blockIdx.x] = 1.0f;
        return;
    }
    const block_q8k* a = aq;
    if constexpr (MODE == kDotSQ) {
        block_q8k* q_sh = reinterpret_cast<block_q8k*>(smem + w_smem);
        const int* src = reinterpret_cast<const int*>(aq);
        int* dst = reinterpret_cast<int*>(q_sh);
        for (int64_t i = threadIdx.x; i < nb * (int64_t)sizeof(block_q8k) / 4; i += blockDim.x) dst[i] = src[i];
        a = q_sh;
    }
    if constexpr (MODE == kReal) {
        block_q8k* q_sh = reinterpret_cast<block_q8k*>(smem + w_smem);
        block_quantize_q8k(in, 1, n, q_sh);
        a = q_sh;
    }
    if constexpr (MODE != kNoStage) stage_wait();
    if constexpr (MODE == kStage) {
        if (threadIdx.x < rows) out[r0 + threadIdx.x] = (float)ws[threadIdx.x * rb];
        return;
    }
    const int j = threadIdx.x & (W - 1);
    const int64_t r = r0 + threadIdx.x / W;
    float c = 0.0f;
    if (r < n_rows && j < nb) {
        const uint8_t* base = MODE == kNoStage ? w + r * rb : ws + (r - r0) * rb;
        c = host_block_contrib<GGML_TYPE_Q4_K>(base + j * (rb / nb), a + j);
    }
    const float v = seg_row_value(c, j, nb, W);
    if (r < n_rows && j == 0) out[r] = v;
}

__global__ void stream_kernel(const uint4* w, int64_t n16, float* out) {
    pdl_wait();
    pdl_launch_next();
    uint32_t acc = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n16; i += (int64_t)gridDim.x * blockDim.x) {
        const uint4 v = __ldcs(w + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) out[0] = 1.0f;
}

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
        std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
        std::exit(1);
    }
}

template <typename K, typename... Args>
void launch(K kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t s, bool pdl, Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    check(cudaLaunchKernelEx(&cfg, kernel, args...), "launch");
}

// us per launch: a graph of L launches (launch_i(stream, i)), median of `reps` replays.
double time_graph(cudaStream_t s, int L, const std::function<void(cudaStream_t, int)>& body, int reps = 15) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "capture");
    for (int i = 0; i < L; ++i) body(s, i);
    check(cudaStreamEndCapture(s, &g), "end capture");
    check(cudaGraphInstantiate(&ge, g, 0), "instantiate");
    for (int i = 0; i < 3; ++i) check(cudaGraphLaunch(ge, s), "warm");
    check(cudaStreamSynchronize(s), "sync");
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
        cudaEventRecord(e0, s);
        check(cudaGraphLaunch(ge, s), "replay");
        cudaEventRecord(e1, s);
        check(cudaEventSynchronize(e1), "sync");
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        t.push_back(1000.0 * ms / L);
    }
    std::sort(t.begin(), t.end());
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    const int L = 48;  // launches per graph (one weight copy each)
    struct Shape {
        const char* name;
        int64_t rows, n;
    };
    const Shape shapes[] = {{"oproj_2048x4096", 2048, 4096}, {"qkv_5120x2048", 5120, 2048},
                            {"gateup_12288x2048", 12288, 2048}};
    cudaStream_t s;
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
    int dev = 0;
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, dev);
    std::printf("{\"device\": \"%s\", \"sms\": %d}\n", prop.name, prop.multiProcessorCount);
    for (const Shape& sh : shapes) {
        const int64_t rb = q8k_row_bytes(GGML_TYPE_Q4_K, sh.n), bytes = sh.rows * rb, nb = sh.n / QK_K;
        const int R = kDecThreads / dec_seg_width(nb);
        const unsigned grid = ceil_div_u(sh.rows, R);
        std::vector<uint8_t*> w(L);
        for (int i = 0; i < L; ++i) {
            check(cudaMalloc(&w[i], bytes + 64), "malloc w");
            // Q4_K blocks: small positive f16 scales, arbitrary quants and sub-block scales.
            std::vector<uint8_t> h(bytes);
            for (int64_t b = 0; b < bytes; ++b) h[b] = (uint8_t)(b * 131 + i * 7 + 17);
            for (int64_t blk = 0; blk < bytes / 144; ++blk) {
                const uint16_t d = 0x1400, dm = 0x1000;  // ~1e-3, ~5e-4
                std::memcpy(&h[blk * 144], &d, 2);
                std::memcpy(&h[blk * 144 + 2], &dm, 2);
            }
            check(cudaMemcpy(w[i], h.data(), bytes, cudaMemcpyHostToDevice), "copy w");
        }
        float *in = nullptr, *out = nullptr;
        block_q8k* aq = nullptr;
        check(cudaMalloc(&in, sh.n * sizeof(float)), "malloc in");
        check(cudaMalloc(&out, (sh.rows + 1024) * sizeof(float)), "malloc out");
        check(cudaMalloc(&aq, nb * sizeof(block_q8k)), "malloc aq");
        std::vector<float> hin(sh.n);
        for (int64_t i = 0; i < sh.n; ++i) hin[i] = (float)((i * 37) % 101 - 50) / 50.0f;
        check(cudaMemcpy(in, hin.data(), sh.n * sizeof(float), cudaMemcpyHostToDevice), "copy in");
        // Q8K activation blocks for the variants that take them, made here: any valid blocks
        // time the same.
        std::vector<block_q8k> hq(nb);
        for (int64_t b = 0; b < nb; ++b) {
            hq[b].d = 0.01f;
            for (int i = 0; i < QK_K; ++i) hq[b].qs[i] = (int8_t)((i * 13 + b) % 255 - 127);
            for (int g = 0; g < QK_K / 16; ++g) {
                int sum = 0;
                for (int i = 0; i < 16; ++i) sum += hq[b].qs[g * 16 + i];
                hq[b].bsums[g] = (int16_t)sum;
            }
        }
        check(cudaMemcpy(aq, hq.data(), nb * sizeof(block_q8k), cudaMemcpyHostToDevice), "copy aq");
        const int64_t w_smem = stage_bytes(R * rb);
        const size_t smem = (size_t)w_smem + (size_t)nb * sizeof(block_q8k);
        auto set_smem = [&](auto k) {
            check(cudaFuncSetAttribute(reinterpret_cast<const void*>(k), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)smem),
                  "smem attr");
            check(cudaFuncSetAttribute(reinterpret_cast<const void*>(k), cudaFuncAttributePreferredSharedMemoryCarveout,
                                       (int)cudaSharedmemCarveoutMaxShared),
                  "carveout");
        };
        set_smem(var_kernel<kEmpty>);
        set_smem(var_kernel<kStage>);
        set_smem(var_kernel<kDotGQ>);
        set_smem(var_kernel<kDotSQ>);
        set_smem(var_kernel<kReal>);
        set_smem(var_kernel<kNoStage>);
        auto report = [&](const char* var, bool pdl, double us) {
            std::printf(
                "{\"shape\": \"%s\", \"variant\": \"%s\", \"pdl\": %d, \"us\": %.2f, \"bytes\": %lld, \"grid\": %u, "
                "\"GBps\": %.0f}\n",
                sh.name, var, pdl ? 1 : 0, us, (long long)bytes, grid, bytes / (us * 1e3));
            std::fflush(stdout);
        };
        for (int pdl = 0; pdl < 2; ++pdl) {
#define VAR(NAME, MODE)                                                                                  \
    report(NAME, pdl, time_graph(s, L, [&](cudaStream_t st, int i) {                                     \
               launch(var_kernel<MODE>, dim3(grid), dim3(kDecThreads), smem, st, pdl, (const uint8_t*)w[i], \
                      sh.rows, sh.n, (const block_q8k*)aq, (const float*)in, out, w_smem);              \
           }))
            VAR("empty", kEmpty);
            VAR("stage", kStage);
            VAR("dot_gq", kDotGQ);
            VAR("dot_sq", kDotSQ);
            VAR("real", kReal);
            VAR("nostage", kNoStage);
#undef VAR
            for (bool given_q8 : {false, true})  // the f32 input quantised per block, or its Q8K blocks
                report(given_q8 ? "lib_q8" : "lib", pdl, time_graph(s, L, [&](cudaStream_t st, int i) {
                           DecMatvecAddArgs p;
                           if (given_q8)
                               p.in_q8 = aq;
                           else
                               p.in = in;
                           p.n = sh.n;
                           p.mat = DecMatrix{w[i], GGML_TYPE_Q4_K, sh.rows, out};
                           dec_matvec_add(p, st, pdl);
                       }));
            for (int blocks : {132, 264, 528, 1056})
                report((std::string("stream_") + std::to_string(blocks)).c_str(), pdl,
                       time_graph(s, L, [&](cudaStream_t st, int i) {
                           launch(stream_kernel, dim3(blocks), dim3(256), 0, st, pdl, (const uint4*)w[i],
                                  bytes / 16, out);
                       }));
        }
        check(cudaDeviceSynchronize(), "sync");
        for (auto p : w) cudaFree(p);
        cudaFree(in);
        cudaFree(out);
        cudaFree(aq);
    }
    return 0;
}
