// CPU tuning knobs: process-wide integer settings that change how the CPU engine schedules and
// streams its work, never what it computes (every setting gives the same bits; the tests run
// with several). bench/cpu_profile.py compares them on the target machine
// (_core.cpu_tuning / cpu_tuning_set / cpu_tuning_choices). Read with a relaxed atomic load
// once per kernel call.
//
// Knobs:
//  prefetch  bytes of weight rows prefetched ahead of the row being multiplied (software
//            prefetch into the caches, so the stream does not stall at each 4 KiB page of the
//            page-cache mapping, where hardware prefetchers stop); 0 = off. The CPU backend uses
//            it for one-token batches (decode) and for direct matvec() calls.
//  prefetch_prefill  the same for the CPU backend's batches of 2+ tokens (prefill).
//  weights_copy  1: a model loaded afterwards on the CPU copies its weights into anonymous
//            memory advised for 2 MiB transparent huge pages (model/weight-copy.h); 0: it reads
//            them through the file mapping. Costs the file size in RAM.
//  few_tokens  1: multi-token Q8K dots (2+ tokens per weight row: prefill, an expert.s tokens)
//            decode each weight block once per chunk of <= 8 tokens and reduce per token over 8
//            blocks (AVX-512 table); 0: 8 tokens in the 8 lanes of each block.s reduction.
//  chunks    the CPU backend's pool partition for batches of 2+ tokens (prefill): m > 0 = dynamic,
//            about m chunks per thread taken from a shared counter (runtime/thread-pool.h);
//            0 = static (one contiguous chunk per thread).
//  chunks_decode  the same for one-token batches (decode).
//  token_chunk  bytes of Q8K activation blocks per token chunk of a multi-token matvec: every
//            row of a thread's chunk for the first chunk of tokens, then the next, so the
//            chunk's activations stay in L1 (multiples of 8 tokens, at least 8); 0 = all tokens
//            per row.
//  row_batch  1: one-token matvecs hand a thread's whole row range to one kernel call, whose
//            AVX-512 short-row form packs the (row, block) pairs of several rows 8 to a vector;
//            0: one kernel call per row.
//  amx_tokens  matvecs of at least this many tokens over Q4_K/Q6_K rows run on the Intel AMX
//            int8 tiles where the machine has them (quant.h q8k_tiles_available); 0 = never.
//  row_pairs the MoE expert regions weigh a row of an expert with c tokens as c * blocks + this
//            many (token, block) pairs (the row's fixed cost); 0 = by token count alone.
#pragma once
#include <atomic>
#include <map>
#include <string>
#include <vector>

namespace qwen3moe {

namespace cpu_tuning {
extern std::atomic<int> g_prefetch;  // bytes
extern std::atomic<int> g_weights_copy;  // 0 / 1
extern std::atomic<int> g_few_tokens;    // 0 / 1 (read by quant/dot-avx512.cpp)
inline int prefetch_bytes() { return g_prefetch.load(std::memory_order_relaxed); }
extern std::atomic<int> g_prefetch_prefill;  // bytes, batches of 2+ tokens
inline int prefetch_prefill_bytes() { return g_prefetch_prefill.load(std::memory_order_relaxed); }
inline bool weights_copy() { return g_weights_copy.load(std::memory_order_relaxed) != 0; }
extern std::atomic<int> g_chunks;         // chunks per thread, prefill (0 = static)
extern std::atomic<int> g_chunks_decode;  // chunks per thread, decode (0 = static)
inline int chunks() { return g_chunks.load(std::memory_order_relaxed); }
inline int chunks_decode() { return g_chunks_decode.load(std::memory_order_relaxed); }
extern std::atomic<int> g_row_pairs;      // MoE row fixed cost in (token, block) pairs
inline int row_pairs() { return g_row_pairs.load(std::memory_order_relaxed); }
extern std::atomic<int> g_row_batch;      // 0 / 1 (read by quant/dot-avx512.cpp and ops/matvec.cpp)
inline bool row_batch() { return g_row_batch.load(std::memory_order_relaxed) != 0; }
extern std::atomic<int> g_token_chunk;    // bytes (0 = off)
inline int token_chunk_bytes() { return g_token_chunk.load(std::memory_order_relaxed); }
extern std::atomic<int> g_amx_tokens;     // tokens (0 = off)
inline int amx_tokens() { return g_amx_tokens.load(std::memory_order_relaxed); }
}  // namespace cpu_tuning

// All knobs and their current values.
std::map<std::string, int> cpu_tuning_get();
// Set one knob; std::invalid_argument for an unknown name or a value out of range.
void cpu_tuning_set(const std::string& name, int value);
// The values bench/cpu_profile.py tries for each knob.
std::map<std::string, std::vector<int>> cpu_tuning_choices();

}  // namespace qwen3moe
