#!/usr/bin/env bash
# A/B of the fused decode step's variants (bit-identical by construction; tests check it):
# tg128 at depth 0 and 4096 on MODEL for each setting of the QWEN3MOE_CUDA_DEC_* switches.
# Usage: bash bench/decode_ab.sh MODEL.gguf [REPS]
set -uo pipefail
model=${1:?usage: decode_ab.sh MODEL.gguf [REPS]}
reps=${2:-3}
for cfg in "1 1" "0 1" "1 0" "0 0"; do
  set -- $cfg
  printf 'next_norm=%s attn_q8=%s: ' "$1" "$2"
  QWEN3MOE_CUDA_DEC_NEXT_NORM=$1 QWEN3MOE_CUDA_DEC_ATTN_Q8=$2 \
    python3 -m qwen3moe bench -m "$model" --device cuda -p 0 -n 128 --depth 0,4096 -r "$reps" --json 2>/dev/null |
    python3 -c "import json,sys; print('  '.join(f\"tg{r['n_gen']}@d{r['n_depth']} {r['median_ts']:.1f}\" for r in json.load(sys.stdin)))"
done
