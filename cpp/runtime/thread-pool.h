// Thread pool: persistent workers and a parallel_for over a static or a dynamic partition.
//
// Static (the default, set_chunks_per_thread(0)): parallel_for(n, fn) splits [0, n) into size()
// contiguous chunks, chunk i = [n*i/P, n*(i+1)/P), runs chunk 0 on the calling thread and chunk
// i on worker i, and returns when all are done.
// Dynamic (set_chunks_per_thread(m), m > 0): [0, n) is split into C = min(n, m*P) contiguous
// chunks, chunk c = [n*c/C, n*(c+1)/C), and every thread (the caller included) takes the next
// untaken chunk from one atomic counter until none is left, so a thread that runs slower (a
// busy hyperthread sibling, a vCPU the host preempts, a late wake-up, costlier items) takes
// fewer chunks instead of holding up the region: on the 16-vCPU target even uniform matvecs
// showed a slowest/mean chunk time of 1.4-1.5 under the static split. Which thread runs a chunk
// (and its thread_index) then varies from run to run, but the chunks still partition [0, n).
// Every op in this engine computes each output element independently of which chunk or thread
// it lands in, so results never depend on the thread count or the partition.
// The callable is passed by reference without type erasure into a heap object: no allocation
// per call. A parallel_for issued from inside a worker runs serially (no nesting).
// The first exception thrown by any chunk is rethrown on the calling thread.
// Waiting: a decode step issues hundreds of short jobs (several per layer), so the fast path
// takes no lock: the caller publishes a job by bumping an atomic generation, workers spin on
// it (pause) for up to kSpinNs after their last job and only then sleep on a condition
// variable (the caller notifies only when someone sleeps), and the caller spins on an atomic
// pending count (yielding after a while, for oversubscribed machines). Idle pools cost no CPU
// once the spin window has passed.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace qwen3moe {

class ThreadPool {
public:
    // n_threads <= 0: std::thread::hardware_concurrency() (at least 1).
    explicit ThreadPool(int n_threads = 0);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }  // threads including the caller

    // 0: static partition; m > 0: dynamic, about m chunks per thread (see the top of the file).
    // Applies to the parallel_for calls that start after it (a call in progress keeps its own).
    void set_chunks_per_thread(int m) { chunks_per_thread_.store(m > 0 ? m : 0, std::memory_order_relaxed); }
    int chunks_per_thread() const { return chunks_per_thread_.load(std::memory_order_relaxed); }

    // fn(begin, end) over the static partition of [0, n).
    template <class F>
    void parallel_for(int64_t n, F&& fn) {
        auto thunk = [](void* ctx, int64_t b, int64_t e, int) { (*static_cast<std::remove_reference_t<F>*>(ctx))(b, e); };
        run(n, thunk, (void*)&fn);
    }
    // fn(begin, end, thread_index): thread_index in [0, size()) selects per-thread scratch.
    template <class F>
    void parallel_for_indexed(int64_t n, F&& fn) {
        auto thunk = [](void* ctx, int64_t b, int64_t e, int t) { (*static_cast<std::remove_reference_t<F>*>(ctx))(b, e, t); };
        run(n, thunk, (void*)&fn);
    }

private:
    using Thunk = void (*)(void*, int64_t, int64_t, int);
    void run(int64_t n, Thunk thunk, void* ctx);
    void worker(int index);
    void run_chunk(int index);
    void run_range(int64_t b, int64_t e, int index);  // one chunk; exceptions into error_

    int n_threads_;                  // threads including the caller
    std::vector<std::thread> workers_;  // size n_threads_ - 1; worker i runs chunk i + 1
    std::mutex mu_;
    std::condition_variable cv_work_;   // sleeping workers wait for a new generation
    std::atomic<uint64_t> generation_{0};  // bumped per parallel_for (and at destruction)
    std::atomic<int> pending_{0};          // workers still running the current job
    std::atomic<int> sleepers_{0};         // workers blocked (or about to block) on cv_work_
    std::atomic<bool> stop_{false};        // set (under mu_) at destruction
    std::atomic<int> chunks_per_thread_{0};  // partition of the following jobs (0: static)
    // current job
    int64_t n_ = 0;
    int64_t n_chunks_ = 0;           // dynamic partition: chunks of [0, n_); 0: static
    alignas(64) std::atomic<int64_t> next_chunk_{0};  // dynamic: first chunk not yet taken
    alignas(64) Thunk thunk_ = nullptr;  // (alignas: next_chunk_ alone on its cache line)
    void* ctx_ = nullptr;
    std::exception_ptr error_;  // first exception of the current job (under mu_)
    bool prof_ = false;         // op profiler on for the current job: chunks time themselves
    struct alignas(64) ChunkTime {
        int64_t start = 0, end = 0;  // steady-clock ns of a chunk's start / end
    };
    std::vector<ChunkTime> chunk_time_;  // [n_threads_] (profiling only)
    std::mutex run_mu_;         // serialises concurrent parallel_for callers
};

}  // namespace qwen3moe
