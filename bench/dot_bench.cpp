// dot_bench.cpp — one-core timing of the multi-token Q8K dots (vec_dot_q8k_multi), ns per
// (256-block, token), thread CPU time (meaningful on a shared, loaded machine), best and median
// of repeats. Not part of the build; compile against the CPU library:
//   g++ -O2 -std=c++17 -Icpp bench/dot_bench.cpp build/dev/libqwen3moe_cpu.a -lpthread -o build/dot_bench
//   build/dot_bench [level] [reps] [few_tokens] [tiles]    (level: auto | scalar | avx2 | avx512vnni;
//   tiles = 1: the AMX tile kernel, one vec_dot_q8k_tiles call for all rows, activations laid out once)
// Weights (256 rows) stay in L2, so this measures the kernel's instructions, not memory.
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "quant/quant.h"
#include "runtime/cpu-tuning.h"

using namespace qwen3moe;

static double thread_ns() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char** argv) {
    const std::string level = argc > 1 ? argv[1] : "auto";
    const int reps = argc > 2 ? std::atoi(argv[2]) : 9;
    set_simd_level(level.c_str());
    if (argc > 3) cpu_tuning_set("few_tokens", std::atoi(argv[3]));  // old-kernel comparisons
    const bool tiles = argc > 4 && std::atoi(argv[4]) != 0;
    if (tiles && !q8k_tiles_available()) {
        std::printf("no AMX tiles here\n");
        return 1;
    }
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int rows = 256;
    std::printf("level %s%s, %d rows, ns per (block, token): best / median of %d\n", simd_level(),
                tiles ? " + AMX tiles" : "", rows, reps);
    for (uint32_t type : {(uint32_t)GGML_TYPE_Q4_K, (uint32_t)GGML_TYPE_Q6_K}) {
        for (int64_t n : {768, 2048, 4096}) {
            std::vector<float> wf((size_t)(rows * n));
            for (float& v : wf) v = nd(rng) * 0.02f;
            const int64_t rb = ggml_type_traits(type)->type_size * (n / 256);
            std::vector<uint8_t> w((size_t)(rows * rb));
            for (int r = 0; r < rows; ++r) quantize_row(type, wf.data() + r * n, w.data() + r * rb, n);
            for (int n_tok : {1, 2, 3, 4, 5, 6, 8, 16, 64}) {
                std::vector<float> x((size_t)(n * n_tok));
                for (float& v : x) v = nd(rng);
                std::vector<block_q8k> a((size_t)(n_tok * n / 256));
                quantize_row_q8k(x.data(), a.data(), n * n_tok);
                std::vector<float> out((size_t)(rows * n_tok));
                const int inner = std::max(1, 2048 / n_tok);
                std::vector<double> t;
                Q8kTiles at;
                if (tiles) q8k_tiles_prepare(a.data(), n / 256, n_tok, n / 256, &at);
                for (int k = 0; k < reps; ++k) {
                    const double t0 = thread_ns();
                    for (int it = 0; it < inner; ++it) {
                        if (tiles) {
                            vec_dot_q8k_tiles(type, w.data(), (size_t)rb, rows, at, n, out.data(), rows);
                            continue;
                        }
                        for (int r = 0; r < rows; ++r)
                            vec_dot_q8k_multi(type, w.data() + r * rb, a.data(), n / 256, n_tok, n, out.data() + r, rows);
                    }
                    t.push_back((thread_ns() - t0) / ((double)inner * rows * (n / 256) * n_tok));
                }
                std::sort(t.begin(), t.end());
                std::printf("%-5s n %5lld tokens %3d : %6.2f / %6.2f\n", ggml_type_name(type), (long long)n, n_tok,
                            t[0], t[t.size() / 2]);
            }
        }
    }
    return 0;
}
