// Thread pool implementation: a generation counter bumped under the mutex (so sleeping workers
// never miss a job), short spins before sleeping on either side, and a pending counter.
#include "runtime/thread-pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define Q3_PAUSE() _mm_pause()
#else
#define Q3_PAUSE() ((void)0)
#endif

namespace qwen3moe {

namespace {
thread_local bool t_in_worker = false;  // true inside a pool chunk (nested calls run serially)
constexpr int kSpin = 256;          // pause iterations before sleeping (a few microseconds)
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
    if (n_threads <= 0) {
        unsigned hc = std::thread::hardware_concurrency();
        n_threads = hc ? (int)hc : 1;
    }
    n_threads_ = n_threads;
    workers_.reserve(n_threads_ - 1);
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
        generation_.fetch_add(1, std::memory_order_release);
    }
    cv_work_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunk(int index) {
    const int64_t b = n_ * index / n_threads_;
    const int64_t e = n_ * (index + 1) / n_threads_;
    if (b >= e) return;
    try {
        thunk_(ctx_, b, e, index);
    } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
    }
}

void ThreadPool::worker(int index) {
    uint64_t seen = 0;
    t_in_worker = true;
    for (;;) {
        for (int i = 0; i < kSpin && generation_.load(std::memory_order_acquire) == seen; ++i) Q3_PAUSE();
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_work_.wait(lk, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
            if (stop_) return;
            seen = generation_.load(std::memory_order_acquire);
        }
        run_chunk(index);
        if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            std::lock_guard<std::mutex> lk(mu_);
            cv_done_.notify_one();
        }
    }
}

void ThreadPool::run(int64_t n, Thunk thunk, void* ctx) {
    if (n <= 0) return;
    if (n_threads_ == 1 || t_in_worker || n == 1) {
        // Serial: all of [0, n) on the caller as thread 0 (documented in the header).
        bool was = t_in_worker;
        t_in_worker = true;
        try {
            thunk(ctx, 0, n, 0);
        } catch (...) {
            t_in_worker = was;
            throw;
        }
        t_in_worker = was;
        return;
    }
    std::lock_guard<std::mutex> run_lk(run_mu_);
    {
        std::lock_guard<std::mutex> lk(mu_);
        n_ = n;
        thunk_ = thunk;
        ctx_ = ctx;
        error_ = nullptr;
        pending_.store(n_threads_ - 1, std::memory_order_relaxed);
        generation_.fetch_add(1, std::memory_order_release);
    }
    cv_work_.notify_all();
    t_in_worker = true;
    run_chunk(0);
    t_in_worker = false;
    for (int i = 0; i < kSpin && pending_.load(std::memory_order_acquire) != 0; ++i) Q3_PAUSE();
    std::exception_ptr err;
    {
        std::unique_lock<std::mutex> lk(mu_);
        cv_done_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
        err = error_;
        error_ = nullptr;
    }
    if (err) std::rethrow_exception(err);
}

}  // namespace qwen3moe
