// Thread pool implementation: an atomic generation counter publishes each job (no lock on the
// fast path), workers spin on it for a while and then sleep on a condition variable (Dekker
// handshake on sleepers_/generation_, both seq_cst, so a sleeping worker is always notified),
// and the caller spins on an atomic pending counter.
#include "runtime/thread-pool.h"

#include "runtime/op-profile.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define Q3_PAUSE() _mm_pause()
#else
#define Q3_PAUSE() ((void)0)
#endif

namespace qwen3moe {

namespace {
thread_local bool t_in_worker = false;  // true inside a pool chunk (nested calls run serially)
constexpr int64_t kSpinNs = 2000000;    // workers spin this long after a job before sleeping
constexpr int kCallerSpin = 1 << 14;    // caller pause iterations before it starts yielding
int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
    if (n_threads <= 0) {
        unsigned hc = std::thread::hardware_concurrency();
        n_threads = hc ? (int)hc : 1;
    }
    n_threads_ = n_threads;
    chunk_time_.resize(n_threads_);
    workers_.reserve(n_threads_ - 1);
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_.store(true, std::memory_order_seq_cst);
        generation_.fetch_add(1, std::memory_order_seq_cst);
    }
    cv_work_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::run_range(int64_t b, int64_t e, int index) {
    if (b >= e) return;
    try {
        thunk_(ctx_, b, e, index);
    } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
    }
}

void ThreadPool::run_chunk(int index) {
    const bool prof = prof_;
    if (prof) chunk_time_[index].start = op_profile::now_ns();
    const int64_t nc = n_chunks_;
    if (nc == 0) {
        run_range(n_ * index / n_threads_, n_ * (index + 1) / n_threads_, index);
    } else {
        // dynamic: take chunks until none is left (a thread that starts late may get none)
        for (int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed); c < nc;
             c = next_chunk_.fetch_add(1, std::memory_order_relaxed))
            run_range(n_ * c / nc, n_ * (c + 1) / nc, index);
    }
    if (prof) chunk_time_[index].end = op_profile::now_ns();
}

void ThreadPool::worker(int index) {
    uint64_t seen = 0;
    t_in_worker = true;
    for (;;) {
        // spin (checking the clock every 256 pauses) until a new generation or kSpinNs passed
        const int64_t t0 = now_ns();
        for (;;) {
            bool changed = false;
            for (int i = 0; i < 256; ++i) {
                if (generation_.load(std::memory_order_acquire) != seen) {
                    changed = true;
                    break;
                }
                Q3_PAUSE();
            }
            if (changed || now_ns() - t0 > kSpinNs) break;
        }
        if (generation_.load(std::memory_order_acquire) == seen) {
            std::unique_lock<std::mutex> lk(mu_);
            sleepers_.fetch_add(1, std::memory_order_seq_cst);
            cv_work_.wait(lk, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
            sleepers_.fetch_sub(1, std::memory_order_relaxed);
        }
        if (stop_.load(std::memory_order_acquire)) return;
        seen = generation_.load(std::memory_order_acquire);
        run_chunk(index);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
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
    n_ = n;
    const int m = chunks_per_thread_.load(std::memory_order_relaxed);
    n_chunks_ = m > 0 ? std::min<int64_t>(n, (int64_t)m * n_threads_) : 0;
    next_chunk_.store(0, std::memory_order_relaxed);  // published by the generation bump below
    thunk_ = thunk;
    ctx_ = ctx;
    pending_.store(n_threads_ - 1, std::memory_order_relaxed);
    prof_ = op_profile::enabled();
    const int64_t t_pub = prof_ ? op_profile::now_ns() : 0;
    generation_.fetch_add(1, std::memory_order_seq_cst);  // publishes the job fields above
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
        { std::lock_guard<std::mutex> lk(mu_); }  // a worker between its check and wait() holds mu_
        cv_work_.notify_all();
    }
    t_in_worker = true;
    run_chunk(0);
    t_in_worker = false;
    for (int i = 0; pending_.load(std::memory_order_acquire) != 0; ++i) {
        if (i < kCallerSpin)
            Q3_PAUSE();
        else
            std::this_thread::yield();
    }
    if (prof_) {
        const int64_t t_done = op_profile::now_ns();
        int64_t busy = 0, busy_max = 0, wake = 0;
        for (int i = 0; i < n_threads_; ++i) {
            const int64_t d = chunk_time_[i].end - chunk_time_[i].start;
            busy += d;
            if (d > busy_max) busy_max = d;
            if (i > 0 && chunk_time_[i].start - t_pub > wake) wake = chunk_time_[i].start - t_pub;
        }
        op_profile::add_region(t_done - t_pub, busy, busy_max, wake, n_threads_);
    }
    std::exception_ptr err;
    {
        std::lock_guard<std::mutex> lk(mu_);
        err = error_;
        error_ = nullptr;
    }
    if (err) std::rethrow_exception(err);
}

}  // namespace qwen3moe
