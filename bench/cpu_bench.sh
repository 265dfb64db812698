#!/usr/bin/env bash
# CPU throughput benchmark (issue 3): the coder30b synthetic file, prompt 64 / decode 32 tokens.
# Usage: bash bench/cpu_bench.sh MODEL.gguf [THREADS] [OUTDIR]
# Writes (and prints) the llama-bench-style JSON to OUTDIR/cpu-bench.json
# (default bench/results/<date>-cpu-t<THREADS>). Targets on the 16-core H200 host: pp64 >= 145 tok/s, tg32 >= 36.6 tok/s.
set -euo pipefail
model=${1:?usage: cpu_bench.sh MODEL.gguf [THREADS] [OUTDIR]}
threads=${2:-16}
out=${3:-bench/results/$(date +%Y-%m-%d)-cpu-t${threads}}
mkdir -p "$out"
export PYTHONPATH=${PYTHONPATH:-python}
python3 -m qwen3moe bench -m "$model" --device cpu -t "$threads" -p 64 -n 32 -r 3 --json | tee "$out/cpu-bench.json"
