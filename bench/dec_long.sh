#!/usr/bin/env bash
# Decode after a long context: the kernel timeline at depth 0 and 4096, then tg128 @ d4096
# with the model's n_ctx as the tg-only bench sets it, with bench30b's n_ctx (4736), and with
# more attention blocks per KV head (QWEN3MOE_CUDA_DECODE_SPLIT), and the two apart. Usage (on the GPU machine):
#   bash bench/dec_long.sh MODEL.gguf   (results under $OUT)
set -uo pipefail
M=$1; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
for d in ${DEPTHS:-0 4096}; do
  echo "-- timeline depth $d"
  python3 bench/dec_timeline.py "$M" $d 16 2>&1 | grep -v "weights ->" | tee "$OUT/timeline-d$d.log" | tail -16
done
tg() {  # label, then env assignments / extra bench args
  local label=$1; shift
  env "$@" python3 -m qwen3moe bench -m "$M" --device cuda -p 0 -n 128 --depth 4096 -r 3 ${CTX:+-c $CTX} --json \
    > "$OUT/tg-$label.json" 2>/dev/null
  python3 -c "import json,sys; r=json.load(open(sys.argv[1]))[0]; print(sys.argv[2], round(r['avg_ts'],1), round(r['stddev_ts'],1))" \
    "$OUT/tg-$label.json" "$label"
}
tg default QWEN3MOE_X=0
CTX=4736 tg ctx4736 QWEN3MOE_X=0
for s in 66 132; do tg split$s QWEN3MOE_CUDA_DECODE_SPLIT=$s; done
# n_ctx and blocks per KV head apart: the default split is min(n_ctx / 128, 2 * SMs / n_head_kv)
CTX=4736 tg ctx4736-split33 QWEN3MOE_CUDA_DECODE_SPLIT=33
tg split37 QWEN3MOE_CUDA_DECODE_SPLIT=37
