// Weight copy: the CPU backend's optional private copy of every weight tensor in anonymous memory
// advised for transparent huge pages (2 MiB), instead of reading the GGUF file's 4 KiB page-cache
// pages through the mapping. Same bytes, so the same results; it costs the file's size in RAM and
// a copy at load, and saves TLB misses / page-boundary prefetch stalls while streaming weights.
// Enabled by the cpu tuning knob "weights_copy" (QWEN3MOE_CPU_WEIGHTS_COPY=1) at load time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/qwen3moe-types.h"

namespace qwen3moe {

class WeightCopy {
public:
    // Copies the tensors' data (with `threads` threads); data(i) is tensor i's copy.
    // OutOfMemory when the anonymous mapping cannot be made.
    WeightCopy(const std::vector<const Tensor*>& tensors, int threads);
    ~WeightCopy();
    WeightCopy(const WeightCopy&) = delete;
    WeightCopy& operator=(const WeightCopy&) = delete;
    const uint8_t* data(size_t i) const { return static_cast<const uint8_t*>(base_) + off_[i]; }
    size_t bytes() const { return size_; }
    bool huge_pages_advised() const { return huge_; }

private:
    void* base_ = nullptr;      // anonymous mapping
    std::vector<size_t> off_;   // [tensors] byte offset of each tensor's copy
    size_t size_ = 0;       // its length (bytes)
    bool huge_ = false;     // madvise(MADV_HUGEPAGE) accepted
};

}  // namespace qwen3moe
