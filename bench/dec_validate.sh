#!/usr/bin/env bash
# One device call to validate and measure a decode change: build, the whole CUDA test suite,
# the decode timeline (TL_DEPTHS, default "0 4096"; TL_AB: VAR=VALUE switches at depth 0), the
# phase trace (TRACE_DEPTHS, TRACE_AB), then tg128 at depth 0 and 4096 (PP=1: the whole bench30b).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
M30=/tmp/coder30b.gguf
bash scripts/device-cuda.sh build synthbg > "$OUT/setup.log" 2>&1 || { tail -30 "$OUT/setup.log"; exit 1; }
CUDATESTS_TIMEOUT=${CUDATESTS_TIMEOUT:-300} bash scripts/device-cuda.sh cudatests 2>&1 | tail -8
bash scripts/device-cuda.sh waitsynth > /dev/null 2>&1 || { echo "no 30B file"; exit 1; }
tl() { python3 bench/dec_timeline.py $M30 "$1" 16 --json "$OUT/tl-$2.json" 2>&1 | grep -v "weights ->\|warn" | tail -10; }
for d in ${TL_DEPTHS:-0 4096}; do tl $d d$d; done
for ab in ${TL_AB:-}; do  # A/B switches (VAR=VALUE) of the timeline at depth 0
  echo "== A/B: $ab"
  (export "$ab"; tl 0 "d0-${ab//[^A-Za-z0-9]/_}")
done
for d in ${TRACE_DEPTHS:-}; do  # the phases inside one layer's kernels (bench/dec_trace.py)
  python3 bench/dec_trace.py $M30 $d 8 --json "$OUT/trace-d$d.json" 2>&1 | grep -v "weights ->" | tail -45
done
for ab in ${TRACE_AB:-}; do
  echo "== trace A/B: $ab"
  (export "$ab"; python3 bench/dec_trace.py $M30 0 8 --json "$OUT/trace-d0-${ab//[^A-Za-z0-9]/_}.json" 2>&1 | grep -v "weights ->" | tail -45)
done
if [ -n "${PP:-}" ]; then  # the whole table: pp512 and tg128 at depth 0 and 4096, 5 samples
  bash scripts/device-cuda.sh bench30b 2>&1 | grep -v "weights ->" | tail -6
else
  TG_DEPTHS=0,4096 bash scripts/device-cuda.sh benchtg 2>&1 | grep -v "weights ->" | tail -3
fi
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
