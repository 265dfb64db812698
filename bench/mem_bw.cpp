// mem_bw.cpp — read bandwidth of this machine's memory from T threads (issue 3's ceiling: a CPU
// decode step streams ~1.9 GB of weights, a 64-token prefill ~17 GB). Not part of the build:
//   g++ -O2 -march=native -std=c++17 bench/mem_bw.cpp -lpthread -o build/mem_bw
//   build/mem_bw [GiB=4] [threads list, default 1,2,4,8,12,16]
// Each thread sums 64-byte lines of its own slice of one buffer (filled once by the main thread);
// the figure is bytes read / wall time, best of 5 passes.
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

static uint64_t sum_slice(const uint8_t* p, size_t n) {
#if defined(__AVX512F__)
    __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
    for (size_t i = 0; i + 128 <= n; i += 128) {
        acc0 = _mm512_add_epi64(acc0, _mm512_load_si512((const void*)(p + i)));
        acc1 = _mm512_add_epi64(acc1, _mm512_load_si512((const void*)(p + i + 64)));
    }
    return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(acc0, acc1));
#else
    __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
    for (size_t i = 0; i + 64 <= n; i += 64) {
        acc0 = _mm256_add_epi64(acc0, _mm256_load_si256((const __m256i*)(p + i)));
        acc1 = _mm256_add_epi64(acc1, _mm256_load_si256((const __m256i*)(p + i + 32)));
    }
    alignas(32) uint64_t t[4];
    _mm256_store_si256((__m256i*)t, _mm256_add_epi64(acc0, acc1));
    return t[0] + t[1] + t[2] + t[3];
#endif
}

int main(int argc, char** argv) {
    const double gib = argc > 1 ? std::atof(argv[1]) : 4.0;
    std::vector<int> tlist = {1, 2, 4, 8, 12, 16};
    if (argc > 2) {
        tlist.clear();
        std::string s = argv[2];
        for (size_t a = 0; a < s.size();) {
            size_t b = s.find(',', a);
            if (b == std::string::npos) b = s.size();
            tlist.push_back(std::atoi(s.substr(a, b - a).c_str()));
            a = b + 1;
        }
    }
    const size_t bytes = (size_t)(gib * (1ull << 30)) & ~(size_t)4095;
    uint8_t* buf = (uint8_t*)std::aligned_alloc(4096, bytes);
    if (!buf) return 1;
    std::memset(buf, 1, bytes);
    std::printf("{\"bytes\": %zu, \"results\": [", bytes);
    bool first = true;
    for (int T : tlist) {
        const size_t slice = (bytes / T) & ~(size_t)127;
        double best = 1e30;
        std::atomic<uint64_t> sink{0};
        for (int pass = 0; pass < 5; ++pass) {
            std::vector<std::thread> th;
            std::atomic<int> ready{0};
            std::atomic<bool> go{false};
            std::chrono::steady_clock::time_point t0;
            for (int t = 0; t < T; ++t)
                th.emplace_back([&, t] {
                    ready.fetch_add(1);
                    while (!go.load(std::memory_order_acquire)) {
                    }
                    sink.fetch_add(sum_slice(buf + (size_t)t * slice, slice));
                });
            while (ready.load() < T) {
            }
            t0 = std::chrono::steady_clock::now();
            go.store(true, std::memory_order_release);
            for (auto& x : th) x.join();
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            best = std::min(best, s);
        }
        std::printf("%s{\"threads\": %d, \"GBps\": %.1f}", first ? "" : ", ", T, (double)slice * T / best / 1e9);
        first = false;
        std::fflush(stdout);
        if (sink.load() == 42) std::printf(" ");
    }
    std::printf("]}\n");
    std::free(buf);
    return 0;
}
