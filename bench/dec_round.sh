#!/usr/bin/env bash
# One device call for a decode-kernel round: build, the fused-decode falsifiers, then the
# decode timeline (bench/dec_timeline.py) at depth 0 and 4096 and tg128 with the defaults, and
# the timeline with each A/B switch given as an argument (e.g. QWEN3MOE_CUDA_DEC_CLUSTER=0).
#   bash bench/dec_round.sh [VAR=VALUE ...]
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
M30=/tmp/coder30b.gguf
bash scripts/device-cuda.sh build synthbg > "$OUT/setup.log" 2>&1 || { tail -30 "$OUT/setup.log"; exit 1; }
tail -3 "$OUT/setup.log"
FUSED_TIMEOUT=${FUSED_TIMEOUT:-300} bash scripts/device-cuda.sh fusedtests 2>&1 | tail -15
bash scripts/device-cuda.sh waitsynth > /dev/null 2>&1 || { echo "no 30B file"; exit 1; }
tl() { python3 bench/dec_timeline.py $M30 "$1" 16 --json "$OUT/tl-$2.json" 2>&1 | grep -v "weights ->\|warn" | tail -12; }
tl 0 d0
tl 4096 d4096
for ab in "$@"; do
  echo "== A/B: $ab"
  (export "$ab"; tl 0 "d0-${ab//[^A-Za-z0-9]/_}")
done
TG_DEPTHS=0,4096 bash scripts/device-cuda.sh benchtg 2>&1 | tail -4
