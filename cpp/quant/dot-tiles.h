// dot-tiles.h — internal: the activation layout of the AMX tile kernels (dot-amx.cpp), made by
// q8k_tiles_prepare (dot-dispatch.cpp).
//
// Q8kTiles::data holds one item per (token tile tt of 16 tokens, block b), item (tt, b) at
// (tt * nb + b) * kQ8kTileItemBytes:
//   bytes [0, 4096)      four B tiles, chunk c (values 64c..64c+63) at c * 1024: 16 rows of
//                        64 bytes, row k holds values 64c + 4k .. 64c + 4k + 3 of tokens 0..15
//                        (4 bytes per token: AMX's B layout for a K = 64 product)
//   bytes [4096, 4160)   the 16 tokens' scales d (float)
//   bytes [4160, 4416)   the sums of the 8 sub-blocks of 32 values (bsums[2j] + bsums[2j + 1], as
//                        int16) in pairs: int32 i * 16 + t = sum_2i | sum_2i+1 << 16 (i < 4)
// Tokens past n_tok are zeros (scale 0, values 0).
#pragma once
#include <cstddef>
#include <cstdint>

namespace qwen3moe {

constexpr size_t kQ8kTileDaOffset = 4096;
constexpr size_t kQ8kTileBsOffset = 4160;
constexpr size_t kQ8kTileItemBytes = 4416;
constexpr int64_t kQ8kTileMaxBlocks = 32;  // rows of at most 32 blocks (one block per canonical lane)

// out[t * out_stride + r] for r < n_rows, t < n_tok (Q4_K or Q6_K rows of nb blocks); false
// (nothing written) when the thread's work space could not be allocated.
bool q8k_tiles_dot_amx(uint32_t type, const uint8_t* w, size_t row_bytes, int64_t n_rows, const uint8_t* acts,
                       int n_tok, int64_t nb, float* out, int64_t out_stride);

}  // namespace qwen3moe
