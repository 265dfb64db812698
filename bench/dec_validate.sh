#!/usr/bin/env bash
# One device call to validate and measure a decode change: build, the whole CUDA test suite,
# the decode timeline at depth 0 and 4096, tg128 at both depths, then pp512 (bench30b).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
M30=/tmp/coder30b.gguf
bash scripts/device-cuda.sh build synthbg > "$OUT/setup.log" 2>&1 || { tail -30 "$OUT/setup.log"; exit 1; }
CUDATESTS_TIMEOUT=${CUDATESTS_TIMEOUT:-300} bash scripts/device-cuda.sh cudatests 2>&1 | tail -8
bash scripts/device-cuda.sh waitsynth > /dev/null 2>&1 || { echo "no 30B file"; exit 1; }
for d in 0 4096; do
  python3 bench/dec_timeline.py $M30 $d 16 --json "$OUT/tl-d$d.json" 2>&1 | grep -v "weights ->\|warn" | tail -10
done
TG_DEPTHS=0,4096 bash scripts/device-cuda.sh benchtg 2>&1 | grep -v "weights ->" | tail -3
[ -n "${PP:-}" ] && bash scripts/device-cuda.sh bench30b 2>&1 | grep -v "weights ->" | tail -6
# Nsight Compute on one layer's kernels named in NCU_K (a regex), with the source view (stall
# samples per source line; the build needs CUDA_FLAGS=-lineinfo).
if [ -n "${NCU_K:-}" ] && command -v ncu > /dev/null; then
  QWEN3MOE_CUDA_PDL=0 timeout 240 ncu --clock-control none --set full --import-source yes -k "regex:$NCU_K" \
    --launch-skip 200 --launch-count ${NCU_N:-3} -f -o "$OUT/ncu" python3 bench/ncu_decode.py $M30 > "$OUT/ncu.log" 2>&1
  tail -3 "$OUT/ncu.log"
  ncu -i "$OUT/ncu.ncu-rep" --page details --csv > "$OUT/ncu-details.csv" 2>&1
  ncu -i "$OUT/ncu.ncu-rep" --page source --csv --print-source cuda > "$OUT/ncu-source.csv" 2>&1
  ls -la "$OUT"/ncu*
fi
exit 0
