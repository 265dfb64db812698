// Catch2 tests of the engine's runtime pieces: thread pool partition and error propagation,
// capture spec validation and buffers, KV cache round trips, sampler rules, and the ops'
// invariances that need no model (attention tiles vs one tile, router ties).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "ops/attention.h"
#include "ops/canon.h"
#include "ops/moe-router.h"
#include "ops/rope.h"
#include "runtime/capture.h"
#include "runtime/kv-cache.h"
#include "runtime/sampler.h"
#include "runtime/thread-pool.h"

using namespace qwen3moe;

TEST_CASE("thread pool: static partition covers [0, n) once, any thread count", "[threads]") {
    for (int threads : {1, 2, 3, 5}) {
        ThreadPool pool(threads);
        REQUIRE(pool.size() == threads);
        for (int64_t n : {0, 1, 2, 7, 64, 1000}) {
            std::vector<std::atomic<int>> hits((size_t)n);
            for (auto& h : hits) h = 0;
            std::atomic<int> bad{0};  // (Catch2 assertions are not thread-safe: count here)
            pool.parallel_for_indexed(n, [&](int64_t b, int64_t e, int tid) {
                // n == 1 runs on the caller as chunk 0 (documented shortcut)
                const bool serial = n == 1;
                if (tid < 0 || tid >= threads || b != (serial ? 0 : n * tid / threads) ||
                    e != (serial ? n : n * (tid + 1) / threads))
                    ++bad;
                for (int64_t i = b; i < e; ++i) hits[(size_t)i]++;
            });
            REQUIRE(bad == 0);
            for (auto& h : hits) REQUIRE(h == 1);
        }
    }
}

TEST_CASE("thread pool: dynamic partition covers [0, n) once in its chunks, any thread count", "[threads]") {
    for (int threads : {1, 2, 3, 5}) {
        ThreadPool pool(threads);
        for (int m : {1, 3, 8}) {
            pool.set_chunks_per_thread(m);
            REQUIRE(pool.chunks_per_thread() == m);
            for (int64_t n : {0, 1, 2, 7, 64, 1000}) {
                const int64_t nc = n < (int64_t)m * threads ? n : (int64_t)m * threads;
                std::vector<std::atomic<int>> hits((size_t)n);
                for (auto& h : hits) h = 0;
                std::atomic<int> bad{0};
                std::atomic<int64_t> calls{0};
                pool.parallel_for_indexed(n, [&](int64_t b, int64_t e, int tid) {
                    ++calls;
                    // a chunk is [n*c/nc, n*(c+1)/nc) for some c (serial shortcuts: all of [0, n))
                    const bool serial = threads == 1 || n == 1;
                    bool is_chunk = serial && b == 0 && e == n;
                    for (int64_t c = 0; !serial && c < nc && !is_chunk; ++c)
                        is_chunk = b == n * c / nc && e == n * (c + 1) / nc;
                    if (tid < 0 || tid >= threads || !is_chunk) ++bad;
                    for (int64_t i = b; i < e; ++i) hits[(size_t)i]++;
                });
                REQUIRE(bad == 0);
                if (threads > 1 && n > 1) REQUIRE(calls == nc);
                for (auto& h : hits) REQUIRE(h == 1);
            }
        }
        pool.set_chunks_per_thread(0);  // back to the static split
        std::vector<int64_t> part((size_t)threads, -1);
        pool.parallel_for_indexed(1000, [&](int64_t b, int64_t e, int t) { part[(size_t)t] = b * 100000 + e; });
        for (int t = 0; t < threads; ++t) REQUIRE(part[(size_t)t] == (1000 * t / threads) * 100000 + 1000 * (t + 1) / threads);
    }
}

TEST_CASE("thread pool: dynamic partition under many short jobs; exceptions reach the caller", "[threads]") {
    ThreadPool pool(4);
    pool.set_chunks_per_thread(4);
    std::vector<int64_t> out(256, 0);
    for (int job = 0; job < 300; ++job) {
        pool.parallel_for((int64_t)out.size(), [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) out[(size_t)i] += i;
        });
        if (job % 100 == 99) std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
    for (int64_t i = 0; i < 256; ++i) REQUIRE(out[(size_t)i] == 300 * i);
    REQUIRE_THROWS_AS(pool.parallel_for(30, [](int64_t b, int64_t) {
        if (b >= 10) throw std::runtime_error("chunk failed");
    }), std::runtime_error);
    std::atomic<int64_t> total{0};
    pool.parallel_for(30, [&](int64_t b, int64_t e) { total += e - b; });
    REQUIRE(total == 30);
}

TEST_CASE("thread pool: a dynamic job does not wait for a worker that wakes late", "[threads]") {
    ThreadPool pool(3);
    pool.set_chunks_per_thread(4);
    std::vector<int64_t> out(512, 0);
    std::atomic<int> by_stalled{0};
    const auto t0 = std::chrono::steady_clock::now();
    pool.stall_worker_for_test(1, 2000000000);  // worker 1: 2 s before it claims anything
    for (int job = 0; job < 50; ++job)
        pool.parallel_for_indexed((int64_t)out.size(), [&](int64_t b, int64_t e, int t) {
            if (t == 1) ++by_stalled;
            for (int64_t i = b; i < e; ++i) out[(size_t)i] += i;
        });
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // The old pool waited for every worker to check in: the first job alone took the 2 s.
    REQUIRE(sec < 1.0);
    for (int64_t i = 0; i < 512; ++i) REQUIRE(out[(size_t)i] == 50 * i);
    // jobs that ran while worker 1 slept got none of its chunks; afterwards it works again
    REQUIRE(by_stalled == 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(2100));
    std::atomic<int> threads_seen{0};
    std::vector<std::atomic<int>> ran(3);
    for (auto& r : ran) r = 0;
    for (int job = 0; job < 200 && threads_seen < 3; ++job)
        pool.parallel_for_indexed(3000, [&](int64_t, int64_t, int t) {
            if (ran[(size_t)t].exchange(1) == 0) ++threads_seen;
            std::this_thread::sleep_for(std::chrono::microseconds(50));
        });
    REQUIRE(ran[1] == 1);
    // a static job needs each thread's own chunk, so it waits for the stalled worker
    pool.set_chunks_per_thread(0);
    pool.stall_worker_for_test(2, 200000000);  // 0.2 s
    const auto t1 = std::chrono::steady_clock::now();
    std::vector<int64_t> part(3, -1);
    pool.parallel_for_indexed(30, [&](int64_t b, int64_t, int t) { part[(size_t)t] = b; });
    REQUIRE(std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count() >= 0.19);
    REQUIRE(part[0] == 0);
    REQUIRE(part[1] == 10);
    REQUIRE(part[2] == 20);
}

TEST_CASE("thread pool: exceptions reach the caller and the pool stays usable", "[threads]") {
    ThreadPool pool(3);
    REQUIRE_THROWS_AS(pool.parallel_for(30, [](int64_t b, int64_t) {
        if (b >= 10) throw std::runtime_error("chunk failed");
    }), std::runtime_error);
    int64_t total = 0;
    std::vector<int64_t> part(3, 0);
    pool.parallel_for_indexed(30, [&](int64_t b, int64_t e, int t) { part[t] = e - b; });
    for (int64_t p : part) total += p;
    REQUIRE(total == 30);
}

// The cases tagged [threads] also run under ThreadSanitizer in CI (a -DQWEN3MOE_TSAN=ON build,
// `qwen3moe_tests "[threads]"`): the spin-then-sleep handoff, pool teardown, and pools used
// from several threads at once must be free of data races.
TEST_CASE("thread pool: many short jobs across the spin/sleep handoff", "[threads]") {
    ThreadPool pool(4);
    std::vector<int64_t> out(256, 0);
    int64_t expect = 0;
    for (int job = 0; job < 400; ++job) {
        // plain (non-atomic) writes to disjoint elements: a missing happens-before edge between
        // the chunks and the caller's reads below is exactly what TSan reports
        pool.parallel_for((int64_t)out.size(), [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) out[(size_t)i] += i;
        });
        expect += 255 * 256 / 2;
        if (job % 50 == 49) std::this_thread::sleep_for(std::chrono::milliseconds(3));  // workers go to sleep
    }
    int64_t total = 0;
    for (int64_t v : out) total += v;
    REQUIRE(total == expect);
}

TEST_CASE("thread pool: create, use and destroy repeatedly; pools on several threads", "[threads]") {
    for (int rep = 0; rep < 20; ++rep) {
        ThreadPool pool(1 + rep % 4);
        std::vector<int> v(97, 0);
        pool.parallel_for(97, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) v[(size_t)i] = (int)i;
        });
        REQUIRE(v[96] == 96);
    }  // destroyed right after use, possibly while workers are still spinning
    std::vector<std::thread> users;
    std::vector<int64_t> sums(3, 0);
    for (int u = 0; u < 3; ++u)
        users.emplace_back([u, &sums] {
            ThreadPool pool(3);
            std::vector<int64_t> part(3, 0);
            for (int job = 0; job < 200; ++job)
                pool.parallel_for_indexed(1000, [&](int64_t b, int64_t e, int t) { part[(size_t)t] += e - b; });
            sums[(size_t)u] = part[0] + part[1] + part[2];
        });
    for (std::thread& t : users) t.join();
    for (int64_t s : sums) REQUIRE(s == 200 * 1000);
}

TEST_CASE("capture spec: names, layers, errors") {
    CaptureSpec spec({"q", "embed", "moe_router_indices"}, {1, 3}, 4);
    REQUIRE(spec.wants(Stage::q, 1));
    REQUIRE_FALSE(spec.wants(Stage::q, 0));
    REQUIRE(spec.wants(Stage::embed, -1));
    REQUIRE_FALSE(spec.wants(Stage::k, 1));
    REQUIRE_THROWS_AS(CaptureSpec({"nope"}, {}, 4), std::invalid_argument);
    REQUIRE_THROWS_WITH(CaptureSpec({"nope"}, {}, 4), Catch::Contains("valid stages: embed, attn_norm"));
    REQUIRE_THROWS_AS(CaptureSpec({"q"}, {4}, 4), std::out_of_range);
    REQUIRE_THROWS_WITH(CaptureSpec({"q"}, {-1}, 4), Catch::Contains("n_layer = 4"));
    CaptureDims d;
    d.n_embd = 8; d.q_dim = 16; d.kv_dim = 4; d.n_expert = 6; d.n_used = 2; d.n_ff_exp = 5; d.n_vocab = 11; d.n_layer = 4;
    CaptureSink sink;
    sink.prepare(CaptureSpec({"q", "moe_router_indices", "moe_expert_gate", "logits"}, {}, 4), d, 3);
    REQUIRE(sink.buffers().size() == 3 * 4 + 1);
    CaptureBuffer* g = sink.find(Stage::moe_expert_gate, 2);
    REQUIRE(g);
    REQUIRE(g->row_elems == 10);
    REQUIRE(g->f.size() == 30);
    REQUIRE(sink.find(Stage::moe_router_indices, 0)->i.size() == 6);
    REQUIRE(sink.find(Stage::logits, -1)->f.size() == 33);
    REQUIRE(sink.find(Stage::k, 0) == nullptr);
    for (int i = 0; i < kStageCount; ++i) REQUIRE(stage_from_name(stage_name((Stage)i)) == (Stage)i);
}

TEST_CASE("KV cache: f32 exact, f16 canonical") {
    KVCache a(2, 4, 3, false), b(2, 4, 3, true);
    const float k[3] = {1.0f, -2.5f, 1e-3f}, v[3] = {65504.0f, 7.0f, -0.1f};
    a.store(1, 2, k, v);
    b.store(1, 2, k, v);
    const float* ka = static_cast<const float*>(a.k_layer(1)) + 2 * 3;
    const uint16_t* kb = static_cast<const uint16_t*>(b.k_layer(1)) + 2 * 3;
    const uint16_t* vb = static_cast<const uint16_t*>(b.v_layer(1)) + 2 * 3;
    for (int i = 0; i < 3; ++i) {
        REQUIRE(ka[i] == k[i]);
        REQUIRE(kb[i] == canon_f32_to_f16(k[i]));
        REQUIRE(vb[i] == canon_f32_to_f16(v[i]));
    }
    REQUIRE(a.bytes() == 2 * 2 * 4 * 3 * 4);
    REQUIRE(b.bytes() == 2 * 2 * 4 * 3 * 2);
}

TEST_CASE("sampler: greedy ties, determinism, cuts") {
    const float l[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 2.0f};
    REQUIRE(sample_greedy(l, 6) == 1);
    Sampler s;
    SamplerParams p;
    REQUIRE(s.sample(l, 6, p, 0) == 1);
    p.temperature = 1.0f;
    p.top_k = 1;
    for (uint64_t c = 0; c < 20; ++c) REQUIRE(s.sample(l, 6, p, c) == 1);  // top_k=1: id order breaks the tie
    p.top_k = 0;
    p.seed = 11;
    std::vector<int> a, b;
    for (uint64_t c = 0; c < 50; ++c) a.push_back(s.sample(l, 6, p, c));
    for (uint64_t c = 0; c < 50; ++c) b.push_back(s.sample(l, 6, p, c));
    REQUIRE(a == b);
    p.min_p = 0.9f;  // only the three tied maxima survive
    for (uint64_t c = 0; c < 50; ++c) {
        const int t = s.sample(l, 6, p, c);
        REQUIRE((t == 1 || t == 3 || t == 5));
    }
    p.top_p = 0.0f;
    REQUIRE_THROWS_AS(s.sample(l, 6, p, 0), std::invalid_argument);
    for (uint64_t c = 0; c < 1000; ++c) {
        const float u = rng_uniform(3, c);
        REQUIRE(u >= 0.0f);
        REQUIRE(u < 1.0f);
    }
}

TEST_CASE("attention: a single key returns V; tile boundaries are handled") {
    const int hd = 8;
    std::vector<float> q(hd, 0.3f), k(300 * hd), v(300 * hd), out(hd), scores(300), row(hd), tile(hd);
    for (size_t i = 0; i < k.size(); ++i) {
        k[i] = (float)((i * 7919) % 13) * 0.1f - 0.6f;
        v[i] = (float)((i * 104729) % 17) * 0.05f - 0.4f;
    }
    AttnScratch sc{scores.data(), row.data(), tile.data()};
    attention_head(q.data(), k.data(), v.data(), false, hd, 0, 1, hd, attention_kq_scale(hd), out.data(), sc);
    for (int d = 0; d < hd; ++d) REQUIRE(out[d] == v[d]);
    for (int n_kv : {127, 128, 129, 256, 257, 300}) {
        attention_head(q.data(), k.data(), v.data(), false, hd, 0, n_kv, hd, attention_kq_scale(hd), out.data(), sc);
        for (int d = 0; d < hd; ++d) {
            REQUIRE(out[d] >= -0.4f);
            REQUIRE(out[d] <= 0.41f);
        }
    }
}

TEST_CASE("router: top-k ties to the lower index, weights sum to ~1") {
    const float probs[6] = {0.1f, 0.25f, 0.1f, 0.25f, 0.2f, 0.1f};
    int32_t idx[4];
    float w[4];
    router_topk(probs, 6, 4, idx, w);
    REQUIRE(idx[0] == 1);
    REQUIRE(idx[1] == 3);
    REQUIRE(idx[2] == 4);
    REQUIRE(idx[3] == 0);
    REQUIRE(w[0] == canon_div(0.25f, ((0.25f + 0.25f) + 0.2f) + 0.1f));
}

TEST_CASE("rope table: position 0 is the identity rotation") {
    RopeTable t = build_rope_table(3, 8, 1e7);
    for (int i = 0; i < 4; ++i) {
        REQUIRE(t.cos_row(0)[i] == 1.0f);
        REQUIRE(t.sin_row(0)[i] == 0.0f);
    }
    REQUIRE(t.data.size() == 2 * 3 * 4);
}
