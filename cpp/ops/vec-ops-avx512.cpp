// vec-ops-avx512.cpp — the VecOps table of the avx512vnni level: the same x86 code as
// vec-ops-avx2.cpp (ops/vec-ops-x86.h), compiled with the AVX-512 flags.
#include "ops/vec-ops-x86.h"

namespace qwen3moe {

const VecOps kVecOpsAvx512 = {"avx512vnni", exp_x8_rows, exp_sub_x8_rows, attention_head_x8, rms_norm_x8, rope_neox_x8,
                              f32_to_f16_x8};

}  // namespace qwen3moe
