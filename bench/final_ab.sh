#!/usr/bin/env bash
# One device call's A/B of scheduling knobs (all bit-identical by construction): tg128 of the fused
# CUDA decode with and without the uniform shared-memory carveout, and the CPU bench (pp64, tg32,
# 16 threads) with the default and with dynamic decode chunks. Usage: bash bench/final_ab.sh MODEL.gguf
set -uo pipefail
m=${1:?usage: final_ab.sh MODEL.gguf}
OUT=${OUT:-/tmp/out}
row() { python3 -c "import json,sys; [print(sys.argv[2], r['n_prompt'], r['n_gen'], r['n_depth'], round(r['median_ts'] or r['avg_ts'],1), round(r['stddev_ts'],1)) for r in json.load(open(sys.argv[1]))]" "$1" "$2"; }
for c in 0 1; do
  QWEN3MOE_CUDA_DEC_CARVEOUT=$c python3 -m qwen3moe bench -m "$m" --device cuda -p 0 -n 128 --depth 0,4096 -r 3 --json > "$OUT/cuda-carveout$c.json" 2>/dev/null
  row "$OUT/cuda-carveout$c.json" "cuda carveout=$c"
done
python3 -m qwen3moe bench -m "$m" --device cpu -t 16 -p 64 -n 32 -r 3 --json > "$OUT/cpu-default.json" 2>/dev/null
row "$OUT/cpu-default.json" "cpu default"
for k in 4 16; do
  QWEN3MOE_CPU_CHUNKS_DECODE=$k python3 -m qwen3moe bench -m "$m" --device cpu -t 16 -p 0 -n 32 -r 3 --json > "$OUT/cpu-chunksdec$k.json" 2>/dev/null
  row "$OUT/cpu-chunksdec$k.json" "cpu chunks_decode=$k"
done
