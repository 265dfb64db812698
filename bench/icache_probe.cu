// icache_probe.cu — what executing a kernel's code for the first time costs on this GPU.
//
// The decode step's fused kernels are large (cuobjdump, sm_90: 43-139 KB of SASS each, about
// 0.5 MB for one layer's six), and each launch runs most of its code once, so if an SM's
// instruction caches do not keep it between layers, every phase pays instruction fetches from
// L2. This times straight-line code of S KB (8 independent FFMA chains, fully unrolled) in one
// warp, with clock64 around the body:
//   cold  right after a kernel that ran 12 other bodies of S KB (different code),
//   warm  the same body launched again right after,
// and prints cycles and ns per KB for each size. Build on the device:
//   nvcc -std=c++17 -O3 -arch=sm_90 bench/icache_probe.cu -o /tmp/icache_probe && /tmp/icache_probe
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define CK(x)                                                                           \
    do {                                                                                \
        cudaError_t e_ = (x);                                                           \
        if (e_ != cudaSuccess) {                                                        \
            std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_));               \
            std::exit(1);                                                               \
        }                                                                               \
    } while (0)

// N FFMAs in 8 chains (16 bytes of SASS each); tag makes each instantiation distinct code.
__device__ __forceinline__ long long clock_after(float dep) {
    long long t;
    asm volatile("{\n\t.reg .f32 d;\n\tmov.f32 d, %1;\n\tmov.u64 %0, %%clock64;\n\t}" : "=l"(t) : "f"(dep) : "memory");
    return t;
}

// N FFMAs in 8 chains (16 bytes of SASS each); tag makes each instantiation distinct code. The
// chains start from a value the compiler cannot know before the first clock read, and the
// second read takes their sum as an input, so the body stays between the two reads.
template <int N, int Tag>
__global__ void body(float a, float b, float* out, long long* cyc) {
    float x[8], y[8];
    const long long t0 = clock_after(a);
    const float z = __int_as_float((int)(t0 >> 62));  // +0.0f (clock64 < 2^62), unknown to the compiler
#pragma unroll
    for (int c = 0; c < 8; ++c) x[c] = a + (float)(c + Tag) + z, y[c] = b * (float)(c + 1);
#pragma unroll
    for (int i = 0; i < N / 8; ++i)
#pragma unroll
        for (int c = 0; c < 8; ++c) x[c] = fmaf(x[c], a, y[(c + i) & 7]);
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < 8; ++c) s += x[c];
    const long long t1 = clock_after(s);
    if (threadIdx.x == 0) {
        out[blockIdx.x] = s;
        cyc[blockIdx.x] = t1 - t0;
    }
}

template <int N, int... Tags>
void flush_all(float* out, long long* cyc, int blocks) {
    (body<N, 100 + Tags><<<blocks, 32>>>(1.0001f, 0.5f, out, cyc), ...);
}

template <int N>
void probe(float* out, long long* cyc, int blocks) {
    long long h[2][132];
    for (int rep = 0; rep < 3; ++rep) {
        flush_all<N, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11>(out, cyc, blocks);
        body<N, 0><<<blocks, 32>>>(1.0001f, 0.5f, out, cyc);
        CK(cudaMemcpy(h[0], cyc, sizeof(long long) * blocks, cudaMemcpyDeviceToHost));
        body<N, 0><<<blocks, 32>>>(1.0001f, 0.5f, out, cyc);
        CK(cudaMemcpy(h[1], cyc, sizeof(long long) * blocks, cudaMemcpyDeviceToHost));
        long long cold = 0, warm = 0;
        for (int i = 0; i < blocks; ++i) cold += h[0][i], warm += h[1][i];
        cold /= blocks;
        warm /= blocks;
        const double kb = N * 16.0 / 1024.0;
        std::printf("{\"kb\": %.0f, \"blocks\": %d, \"rep\": %d, \"cold_cycles\": %lld, \"warm_cycles\": %lld, "
                    "\"extra_cycles_per_kb\": %.0f}\n",
                    kb, blocks, rep, cold, warm, (double)(cold - warm) / kb);
    }
}

int main() {
    float* out;
    long long* cyc;
    CK(cudaMalloc(&out, 4096));
    CK(cudaMalloc(&cyc, 8 * 256));
    for (int blocks : {1, 132}) {
        probe<512>(out, cyc, blocks);   // 8 KB
        probe<2048>(out, cyc, blocks);  // 32 KB
        probe<4096>(out, cyc, blocks);  // 64 KB
    }
    CK(cudaDeviceSynchronize());
    return 0;
}
