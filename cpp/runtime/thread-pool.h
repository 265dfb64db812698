// Thread pool: persistent workers and a parallel_for over a static or a dynamic partition.
//
// Static (the default, set_chunks_per_thread(0)): parallel_for(n, fn) splits [0, n) into size()
// contiguous chunks, chunk i = [n*i/P, n*(i+1)/P), runs chunk 0 on the calling thread and chunk
// i on worker i, and returns when all are done.
// Dynamic (set_chunks_per_thread(m), m > 0): [0, n) is split into C = min(n, m*P, 65535) contiguous
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
// count of finished chunks (yielding after a while, for oversubscribed machines). Idle pools
// cost no CPU once the spin window has passed.
// A dynamic job is done when its chunks are, not when every worker has seen it: chunks are
// claimed with a compare-and-swap on one word holding the job's generation, chunk count and
// next chunk, so a worker that wakes late (a preempted vCPU: on the 16-vCPU target the last of
// 15 workers started a region 15-130 us after it was published) claims nothing of a job that
// has moved on, and the caller never waits for it. A static job waits for every thread (each
// owns its chunk).
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

    // Test hook: worker `worker` (1..size()-1) sleeps `ns` once, after it next sees a job and
    // before it claims any of it: a dynamic job must finish without it, a static one waits.
    void stall_worker_for_test(int worker, int64_t ns) {
        stall_ns_.store(ns, std::memory_order_relaxed);
        stall_worker_.store(worker, std::memory_order_release);
    }

private:
    using Thunk = void (*)(void*, int64_t, int64_t, int);
    void run(int64_t n, Thunk thunk, void* ctx);
    void worker(int index);
    void run_job(uint32_t gen, int index);            // this thread's part of job `gen`, if any
    void run_range(int64_t b, int64_t e, int index);  // one chunk; exceptions into error_

    int n_threads_;                  // threads including the caller
    std::vector<std::thread> workers_;  // size n_threads_ - 1; worker i runs chunk i + 1
    std::mutex mu_;
    std::condition_variable cv_work_;   // sleeping workers wait for a new generation
    std::atomic<uint64_t> generation_{0};  // bumped per parallel_for (and at destruction)
    std::atomic<int64_t> done_{0};         // chunks of the current job finished
    std::atomic<int> sleepers_{0};         // workers blocked (or about to block) on cv_work_
    std::atomic<bool> stop_{false};        // set (under mu_) at destruction
    std::atomic<int> chunks_per_thread_{0};  // partition of the following jobs (0: static)
    // current job
    int64_t n_ = 0;
    // The current job's claim word: bits 63..32 its generation (low 32 bits), 31..16 its chunk
    // count C (0: static), 15..0 the next dynamic chunk to claim. Published (release) before
    // the generation bump; a thread reads the job fields only after a claim of this job.
    alignas(64) std::atomic<uint64_t> work_{0};
    alignas(64) Thunk thunk_ = nullptr;  // (alignas: work_ alone on its cache line)
    void* ctx_ = nullptr;
    std::exception_ptr error_;  // first exception of the current job (under mu_)
    bool prof_ = false;         // op profiler on for the current job: chunks time themselves
    struct alignas(64) ChunkTime {
        int64_t start = 0, end = 0;  // steady-clock ns of a thread's first chunk start / last end
        uint32_t gen = 0;            // the job they belong to (threads that took no chunk: older)
    };
    std::vector<ChunkTime> chunk_time_;  // [n_threads_] (profiling only)
    static constexpr int64_t kMaxDynamicChunks = 65535;  // fits the claim word
    std::mutex run_mu_;         // serialises concurrent parallel_for callers
    std::atomic<int> stall_worker_{-1};  // stall_worker_for_test
    std::atomic<int64_t> stall_ns_{0};
};

}  // namespace qwen3moe
