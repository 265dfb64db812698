// Weight copy into anonymous (transparent-huge-page) memory; see weight-copy.h.
#include "model/weight-copy.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

#include "runtime/errors.h"

namespace qwen3moe {

namespace {
constexpr size_t kAlign = 4096;  // every tensor starts on its own page
#ifdef MADV_POPULATE_READ
constexpr int kMadvPopulateRead = MADV_POPULATE_READ;
#else
constexpr int kMadvPopulateRead = 22;  // Linux 5.14 uapi value
#endif
size_t tensor_bytes(const Tensor& t) { return t.row_bytes * (size_t)(t.ne[1] * t.ne[2] * t.ne[3]); }
}  // namespace

WeightCopy::WeightCopy(const std::vector<const Tensor*>& tensors, int threads) {
    std::vector<size_t>& off = off_;
    off.assign(tensors.size(), 0);
    size_t total = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
        off[i] = total;
        total += (tensor_bytes(*tensors[i]) + kAlign - 1) / kAlign * kAlign;
    }
    const size_t huge = size_t(2) << 20;
    size_ = (total + huge - 1) / huge * huge;
    if (size_ == 0) return;
    void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        throw OutOfMemory("weights_copy: cannot allocate " + std::to_string(size_ >> 20) +
                          " MiB of anonymous memory for the weight copy");
    base_ = p;
#ifdef MADV_HUGEPAGE
    huge_ = madvise(base_, size_, MADV_HUGEPAGE) == 0;
#endif
    // Copy in slices of ~64 MiB spread over the threads (tensor by tensor, split inside large ones).
    struct Piece {
        const uint8_t* src;
        uint8_t* dst;
        size_t n;
    };
    std::vector<Piece> pieces;
    const size_t slice = size_t(64) << 20;
    for (size_t i = 0; i < tensors.size(); ++i) {
        const size_t n = tensor_bytes(*tensors[i]);
        for (size_t o = 0; o < n; o += slice)
            pieces.push_back({tensors[i]->data + o, static_cast<uint8_t*>(base_) + off[i] + o, n - o < slice ? n - o : slice});
    }
    if (threads < 1) threads = 1;
    auto work = [&](int tid) {
        for (size_t k = (size_t)tid; k < pieces.size(); k += (size_t)threads) {
            // Fill the source's page tables in one call (a page fault per 4 KiB page is slow,
            // in VMs especially); kernels before 5.14 refuse it and the copy faults as usual.
            const uintptr_t a = (uintptr_t)pieces[k].src & ~(uintptr_t)(kAlign - 1);
            const uintptr_t e = (uintptr_t)pieces[k].src + pieces[k].n;
            (void)madvise((void*)a, e - a, kMadvPopulateRead);
            std::memcpy(pieces[k].dst, pieces[k].src, pieces[k].n);
        }
    };
    std::vector<std::thread> ts;
    for (int t = 1; t < threads; ++t) ts.emplace_back(work, t);
    work(0);
    for (auto& t : ts) t.join();
    mprotect(base_, size_, PROT_READ);  // read-only like the file mapping (best effort)
}

WeightCopy::~WeightCopy() {
    if (base_) munmap(base_, size_);
}

}  // namespace qwen3moe
