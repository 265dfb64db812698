// vec-ops-avx2.cpp — the AVX2/FMA/F16C VecOps table (ops/vec-ops-x86.h).
#include "ops/vec-ops-x86.h"

namespace qwen3moe {

const VecOps kVecOpsAvx2 = {"avx2", exp_x8_rows, exp_sub_x8_rows, attention_head_x8, rms_norm_x8, rope_neox_x8,
                            f32_to_f16_x8};

}  // namespace qwen3moe
