// device-memory.cu — allocation, copies and streams behind cuda-ops.h. Allocation failures
// become qwen3moe::OutOfMemory with the requested size and the device's free/total memory.
#include <atomic>
#include <string>

#include "cuda/common.cuh"
#include "cuda/cuda-ops.h"
#include "runtime/errors.h"

namespace qwen3moe::cuda {

namespace {
std::string mib(size_t b) { return std::to_string((b + (1u << 20) - 1) >> 20) + " MiB"; }

std::atomic<long long> g_fail_countdown{0};  // > 0: allocations left until the injected failure
std::atomic<long long> g_alloc_count{0};     // device_alloc calls since the last inject_alloc_failure
}  // namespace

long long inject_alloc_failure(long long n) {
    g_fail_countdown.store(n > 0 ? n : 0);
    return g_alloc_count.exchange(0);
}

void* device_alloc(size_t bytes) {
    g_alloc_count.fetch_add(1);
    long long left = g_fail_countdown.load();
    while (left > 0 && !g_fail_countdown.compare_exchange_weak(left, left - 1)) {
    }
    if (left == 1)
        throw OutOfMemory("CUDA out of memory: cannot allocate " + std::to_string(bytes) +
                          " bytes (injected failure: qwen3moe test hook)");
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err == cudaSuccess) return p;
    cudaGetLastError();
    if (err == cudaErrorMemoryAllocation) {
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) cudaGetLastError();
        throw OutOfMemory("CUDA out of memory: cannot allocate " + std::to_string(bytes) +
                          " bytes (" + mib(bytes) + "); device has " + mib(free_b) +
                          " free of " + mib(total_b));
    }
    throw_cuda_error(err, "cudaMalloc", __FILE__, __LINE__);
}

void device_free(void* p) noexcept {
    if (p && cudaFree(p) != cudaSuccess) cudaGetLastError();
}

void memcpy_h2d(void* dst, const void* src, size_t bytes, void* stream) {
    if (bytes) Q3_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, to_stream(stream)));
}
void memcpy_d2h(void* dst, const void* src, size_t bytes, void* stream) {
    if (bytes) {
        Q3_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, to_stream(stream)));
        Q3_CUDA_CHECK(cudaStreamSynchronize(to_stream(stream)));
    }
}
void memcpy_d2d(void* dst, const void* src, size_t bytes, void* stream) {
    if (bytes) Q3_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, to_stream(stream)));
}
void memset_device(void* dst, int value, size_t bytes, void* stream) {
    if (bytes) Q3_CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, to_stream(stream)));
}

void* stream_create() {
    cudaStream_t s = nullptr;
    Q3_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
}
void stream_destroy(void* stream) noexcept {
    if (stream && cudaStreamDestroy(to_stream(stream)) != cudaSuccess) cudaGetLastError();
}
void stream_sync(void* stream) { Q3_CUDA_CHECK(cudaStreamSynchronize(to_stream(stream))); }
void device_synchronize() { Q3_CUDA_CHECK(cudaDeviceSynchronize()); }
void set_device(int dev) { Q3_CUDA_CHECK(cudaSetDevice(dev)); }
void mem_info(size_t* free_bytes, size_t* total_bytes) {
    Q3_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}

void* event_create() {
    cudaEvent_t e = nullptr;
    Q3_CUDA_CHECK(cudaEventCreate(&e));
    return e;
}
void event_destroy(void* event) noexcept {
    if (event) (void)cudaEventDestroy(static_cast<cudaEvent_t>(event));
}
void event_record(void* event, void* stream) {
    Q3_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), to_stream(stream)));
}
float event_elapsed_ms(void* start, void* stop) {
    Q3_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop)));
    float ms = 0.0f;
    Q3_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(stop)));
    return ms;
}

}  // namespace qwen3moe::cuda
