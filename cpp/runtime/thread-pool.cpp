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

// This thread's part of job `gen` (the generation it saw): static jobs run the thread's own
// chunk (the job cannot finish without it, so its fields are stable); dynamic jobs claim
// chunks by compare-and-swap on work_ while the word still names `gen` and chunks remain. A
// thread that arrives after the last claim (or after the job was replaced) does nothing and
// reads no job field. Finished chunks are counted into done_ only after the thread's profile
// times are written, with release order, so the caller that sees done_ complete sees both.
void ThreadPool::run_job(uint32_t gen, int index) {
    uint64_t w = work_.load(std::memory_order_acquire);
    if ((uint32_t)(w >> 32) != gen) return;
    const int64_t C = (int64_t)((w >> 16) & 0xffffu);
    if (C == 0) {  // static: chunk `index`
        const bool prof = prof_;
        if (prof) chunk_time_[index].start = op_profile::now_ns();
        run_range(n_ * index / n_threads_, n_ * (index + 1) / n_threads_, index);
        if (prof) {
            chunk_time_[index].end = op_profile::now_ns();
            chunk_time_[index].gen = gen;
        }
        done_.fetch_add(1, std::memory_order_release);
        return;
    }
    int64_t taken = 0;
    bool prof = false;
    for (;;) {
        const int64_t c = (int64_t)(w & 0xffffu);
        if ((uint32_t)(w >> 32) != gen || c >= C) break;
        if (!work_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
        if (taken++ == 0) {
            prof = prof_;
            if (prof) chunk_time_[index].start = op_profile::now_ns();
        }
        run_range(n_ * c / C, n_ * (c + 1) / C, index);
        w = work_.load(std::memory_order_acquire);
    }
    if (taken == 0) return;
    if (prof) {
        chunk_time_[index].end = op_profile::now_ns();
        chunk_time_[index].gen = gen;
    }
    done_.fetch_add(taken, std::memory_order_release);
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
        if (stall_worker_.load(std::memory_order_relaxed) == index) {
            int expect = index;
            if (stall_worker_.compare_exchange_strong(expect, -1, std::memory_order_acquire))
                std::this_thread::sleep_for(std::chrono::nanoseconds(stall_ns_.load(std::memory_order_relaxed)));
        }
        run_job((uint32_t)seen, index);
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
    const int64_t C = m > 0 ? std::min<int64_t>({n, (int64_t)m * n_threads_, kMaxDynamicChunks}) : 0;
    thunk_ = thunk;
    ctx_ = ctx;
    prof_ = op_profile::enabled();
    done_.store(0, std::memory_order_relaxed);
    // Only this caller (under run_mu_) and the destructor change generation_, so this is the
    // value the bump below produces. The claim word first (release: with the fields above),
    // then the generation that wakes the workers.
    const uint64_t gen = generation_.load(std::memory_order_relaxed) + 1;
    work_.store(((uint64_t)(uint32_t)gen << 32) | ((uint64_t)C << 16), std::memory_order_release);
    const int64_t t_pub = prof_ ? op_profile::now_ns() : 0;
    generation_.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
        { std::lock_guard<std::mutex> lk(mu_); }  // a worker between its check and wait() holds mu_
        cv_work_.notify_all();
    }
    t_in_worker = true;
    run_job((uint32_t)gen, 0);
    t_in_worker = false;
    const int64_t total = C > 0 ? C : n_threads_;
    for (int i = 0; done_.load(std::memory_order_acquire) != total; ++i) {
        if (i < kCallerSpin)
            Q3_PAUSE();
        else
            std::this_thread::yield();
    }
    if (prof_) {
        // Threads that took no chunk of this job (late wake-ups) are not counted: the job did
        // not wait for them.
        const int64_t t_done = op_profile::now_ns();
        int64_t busy = 0, busy_max = 0, wake = 0;
        for (int i = 0; i < n_threads_; ++i) {
            if (chunk_time_[i].gen != (uint32_t)gen) continue;
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
